package asyncq

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

func sdkClient(t *testing.T, e *env) *lambda.Client {
	t.Helper()
	srv := httptest.NewServer(e.svc.Handler())
	t.Cleanup(srv.Close)
	return lambda.New(lambda.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(srv.URL),
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDFLINT", "secret", ""),
		RetryMaxAttempts: 1,
	})
}

// TestEventInvokeConfigSDK drives the 2019-09-25 API with the real AWS SDK.
func TestEventInvokeConfigSDK(t *testing.T) {
	e := newEnv(t, nil)
	fn := e.fns.add("cfgfn", "")
	e.fns.add("target", "")
	c := sdkClient(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	before := time.Now().Add(-time.Second)
	put, err := c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName:             aws.String("cfgfn"),
		MaximumRetryAttempts:     aws.Int32(1),
		MaximumEventAgeInSeconds: aws.Int32(120),
		DestinationConfig: &types.DestinationConfig{
			OnFailure: &types.OnFailure{Destination: aws.String("arn:aws:sqs:us-east-1:" + testAccount + ":failed")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(put.FunctionArn) != fn.ARN()+":$LATEST" || aws.ToInt32(put.MaximumRetryAttempts) != 1 ||
		aws.ToInt32(put.MaximumEventAgeInSeconds) != 120 || put.LastModified == nil || put.LastModified.Before(before) ||
		put.LastModified.After(time.Now().Add(time.Second)) {
		t.Fatalf("put output %+v", put)
	}
	if put.DestinationConfig == nil || put.DestinationConfig.OnFailure == nil ||
		aws.ToString(put.DestinationConfig.OnFailure.Destination) != "arn:aws:sqs:us-east-1:"+testAccount+":failed" {
		t.Fatalf("destination config %+v", put.DestinationConfig)
	}

	// Update merges: retries change, age and destination stay.
	upd, err := c.UpdateFunctionEventInvokeConfig(ctx, &lambda.UpdateFunctionEventInvokeConfigInput{
		FunctionName:         aws.String("arn:aws:lambda:us-east-1:" + testAccount + ":function:cfgfn"),
		MaximumRetryAttempts: aws.Int32(0),
		DestinationConfig: &types.DestinationConfig{
			OnSuccess: &types.OnSuccess{Destination: aws.String("arn:aws:lambda:us-east-1:" + testAccount + ":function:target")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt32(upd.MaximumRetryAttempts) != 0 || aws.ToInt32(upd.MaximumEventAgeInSeconds) != 120 ||
		aws.ToString(upd.DestinationConfig.OnFailure.Destination) == "" || aws.ToString(upd.DestinationConfig.OnSuccess.Destination) == "" {
		t.Fatalf("update output %+v %+v", upd, upd.DestinationConfig)
	}

	get, err := c.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("cfgfn"), Qualifier: aws.String("$LATEST")})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt32(get.MaximumRetryAttempts) != 0 || aws.ToInt32(get.MaximumEventAgeInSeconds) != 120 {
		t.Fatalf("get output %+v", get)
	}
	// The stored config drives the retry policy.
	if got, _ := e.svc.configs.get(ctx, testAccount, "cfgfn", "$LATEST"); got.retries() != 0 || got.maxAge() != 2*time.Minute {
		t.Fatalf("stored config %+v", got)
	}

	list, err := c.ListFunctionEventInvokeConfigs(ctx, &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: aws.String("cfgfn"), MaxItems: aws.Int32(10)})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.FunctionEventInvokeConfigs) != 1 || list.NextMarker != nil ||
		aws.ToString(list.FunctionEventInvokeConfigs[0].FunctionArn) != fn.ARN()+":$LATEST" {
		t.Fatalf("list %+v", list)
	}

	// Validation errors as Lambda's.
	_, err = c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("cfgfn"), MaximumRetryAttempts: aws.Int32(3)})
	var ipv *types.InvalidParameterValueException
	if !errors.As(err, &ipv) {
		t.Fatalf("retries 3: got %v, want InvalidParameterValueException", err)
	}
	_, err = c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("cfgfn"), MaximumEventAgeInSeconds: aws.Int32(59)})
	if !errors.As(err, &ipv) {
		t.Fatalf("age 59: got %v, want InvalidParameterValueException", err)
	}
	_, err = c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName:      aws.String("cfgfn"),
		DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String("arn:aws:sns:us-east-1:" + testAccount + ":topic")}},
	})
	if !errors.As(err, &ipv) {
		t.Fatalf("sns destination: got %v, want InvalidParameterValueException", err)
	}
	var rnf *types.ResourceNotFoundException
	_, err = c.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("nosuch")})
	if !errors.As(err, &rnf) {
		t.Fatalf("unknown function: got %v, want ResourceNotFoundException", err)
	}

	if _, err := c.DeleteFunctionEventInvokeConfig(ctx, &lambda.DeleteFunctionEventInvokeConfigInput{FunctionName: aws.String("cfgfn")}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("cfgfn")})
	if !errors.As(err, &rnf) {
		t.Fatalf("after delete: got %v, want ResourceNotFoundException", err)
	}
	_, err = c.DeleteFunctionEventInvokeConfig(ctx, &lambda.DeleteFunctionEventInvokeConfigInput{FunctionName: aws.String("cfgfn")})
	if !errors.As(err, &rnf) {
		t.Fatalf("second delete: got %v, want ResourceNotFoundException", err)
	}
	list, err = c.ListFunctionEventInvokeConfigs(ctx, &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: aws.String("cfgfn")})
	if err != nil || len(list.FunctionEventInvokeConfigs) != 0 {
		t.Fatalf("list after delete: %+v %v", list, err)
	}
}

func TestListEventInvokeConfigsPages(t *testing.T) {
	e := newEnv(t, nil)
	e.fns.add("paged", "")
	c := sdkClient(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, q := range []string{"$LATEST", "1", "2", "3"} {
		if _, err := c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{
			FunctionName: aws.String("paged"), Qualifier: aws.String(q), MaximumRetryAttempts: aws.Int32(1),
		}); err != nil {
			t.Fatalf("put %s: %v", q, err)
		}
	}
	var got []string
	p := lambda.NewListFunctionEventInvokeConfigsPaginator(c, &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: aws.String("paged"), MaxItems: aws.Int32(3)})
	for pages := 0; p.HasMorePages(); pages++ {
		if pages > 4 {
			t.Fatal("paginator does not end")
		}
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.FunctionEventInvokeConfigs) > 3 {
			t.Fatalf("page of %d items, MaxItems 3", len(out.FunctionEventInvokeConfigs))
		}
		for _, c := range out.FunctionEventInvokeConfigs {
			got = append(got, aws.ToString(c.FunctionArn))
		}
	}
	if len(got) != 4 {
		t.Fatalf("listed %v", got)
	}
	seen := map[string]bool{}
	for _, a := range got {
		if seen[a] {
			t.Fatalf("listed %s twice: %v", a, got)
		}
		seen[a] = true
	}
	// Conflicting qualifiers are refused.
	_, err := c.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("paged:1"), Qualifier: aws.String("2")})
	var ipv *types.InvalidParameterValueException
	if !errors.As(err, &ipv) {
		t.Fatalf("conflicting qualifiers: %v", err)
	}
	g, err := c.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("paged:2")})
	if err != nil || aws.ToString(g.FunctionArn) != "arn:aws:lambda:us-east-1:"+testAccount+":function:paged:2" {
		t.Fatalf("get paged:2: %+v %v", g, err)
	}
}
