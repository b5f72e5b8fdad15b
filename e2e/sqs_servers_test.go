package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/flintdev/flint/internal/polltest"
)

var natsRE = regexp.MustCompile(`msg="flint server listening" .*nats=(nats://\S+)`)

// invocations reads a server's count of invocations handed to sandboxes.
func (s *flintServer) invocations(t *testing.T) uint64 {
	t.Helper()
	resp, err := http.Get(s.url() + "/flint/v1/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct{ Sandboxes struct{ Invocations uint64 } }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st.Sandboxes.Invocations
}

// TestSQSMappingTwoServers runs two servers on one backbone (the second
// uses the first's NATS with --nats-url): a queue is an SQS queue on both,
// and one event source mapping is drained by the pollers of both, each
// message into the function exactly once.
func TestSQSMappingTwoServers(t *testing.T) {
	a := startServer(t, t.TempDir())
	m := natsRE.FindStringSubmatch(a.log())
	if m == nil {
		t.Fatalf("no NATS URL in the first server's log:\n%s", a.log())
	}
	b := startServer(t, t.TempDir(), "--nats-url", m[1])
	ctx := ctxT(t, 5*time.Minute)

	c := a.lambda()
	python := offeredRuntime(t, c, "python3.")
	if _, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("sqsrec"), Runtime: types.Runtime(python), Handler: aws.String("handler.handler"),
		Role: aws.String("arn:aws:iam::000000000000:role/x"), Code: &types.FunctionCode{ZipFile: zipTestdata(t, "sqsfn")},
	}); err != nil {
		t.Fatal(err)
	}
	sqsOf := func(s *flintServer) *awssqs.Client {
		return awssqs.New(awssqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.url()),
			Credentials: credentials.NewStaticCredentialsProvider("AKIDFLINT", "secret", ""), RetryMaxAttempts: 1})
	}
	qa, qb := sqsOf(a), sqsOf(b)
	if _, err := qa.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String("shared")}); err != nil {
		t.Fatal(err)
	}
	// The queue created on a is known to b, under b's own URL.
	got, err := qb.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String("shared")})
	if err != nil || *got.QueueUrl != b.url()+"/000000000000/shared" {
		t.Fatalf("GetQueueUrl on the second server: %v %v", got, err)
	}
	if _, err := b.lambda().CreateEventSourceMapping(ctx, &lambda.CreateEventSourceMappingInput{FunctionName: aws.String("sqsrec"),
		EventSourceArn: aws.String("arn:aws:sqs:us-east-1:000000000000:shared"), BatchSize: aws.Int32(10)}); err != nil {
		t.Fatal(err)
	}
	const n = 600
	var wg sync.WaitGroup
	for w, q := range []*awssqs.Client{qa, qb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := aws.String("http://any-host/000000000000/shared") // only the path names the queue
			for k := w; k < n/10; k += 2 {
				var entries []sqstypes.SendMessageBatchRequestEntry
				for i := k * 10; i < k*10+10; i++ {
					entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), MessageBody: aws.String(fmt.Sprintf("slow-%04d", i))})
				}
				if _, err := q.SendMessageBatch(ctx, &awssqs.SendMessageBatchInput{QueueUrl: url, Entries: entries}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var seen []sighting
	polltest.Check(t, 4*time.Minute, fmt.Sprintf("the function to see %d messages", n), func() error {
		seen = sightings(a.functionLogs(t, "sqsrec"))
		if len(seen) < n {
			return fmt.Errorf("%d seen", len(seen))
		}
		return nil
	})
	time.Sleep(2 * time.Second) // room for a duplicate to show
	seen = sightings(a.functionLogs(t, "sqsrec"))
	times := map[string]int{}
	for _, x := range seen {
		times[x.body]++
	}
	for i := 0; i < n; i++ {
		if k := fmt.Sprintf("slow-%04d", i); times[k] != 1 {
			t.Errorf("%s seen %d times, want once", k, times[k])
		}
	}
	ia, ib := a.invocations(t), b.invocations(t)
	t.Logf("invocations: first server %d, second server %d", ia, ib)
	if ia == 0 || ib == 0 {
		t.Errorf("one server did all the work (%d, %d): the mapping's pollers should run on both", ia, ib)
	}
}
