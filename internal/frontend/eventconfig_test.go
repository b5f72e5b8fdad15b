package frontend

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/flintdev/flint/internal/asyncq"
	"github.com/flintdev/flint/internal/backbone"
)

// newAsyncEnv is newEnv whose event invoke configs live in a real
// asyncq.Service on the same backbone (its pollers are not started: Event
// invocations still go to the recorder).
func newAsyncEnv(t *testing.T) (*testEnv, *asyncq.Service) {
	var svc *asyncq.Service
	e := newEnvWith(t, func(c *Config, bb *backbone.Backbone) {
		var err error
		svc, err = asyncq.New(asyncq.Config{JetStream: bb.JetStream(), Invoker: c.Invoker.(asyncq.Invoker), Functions: c.Functions})
		if err != nil {
			t.Fatalf("asyncq: %v", err)
		}
		c.EventConfigs = svc
	})
	return e, svc
}

// TestEventInvokeConfigSDK drives the 2019-09-25 API with the real AWS SDK.
func TestEventInvokeConfigSDK(t *testing.T) {
	e, _ := newAsyncEnv(t)
	c := e.client
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	zip := zipOf(t, map[string]string{"bootstrap": "x"})
	for _, n := range []string{"cfgfn", "target"} {
		if _, err := c.CreateFunction(ctx, createInput(n, zip)); err != nil {
			t.Fatal(err)
		}
	}
	arn := "arn:aws:lambda:us-east-1:000000000000:function:cfgfn"

	put, err := c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName:             aws.String("cfgfn"),
		MaximumRetryAttempts:     aws.Int32(1),
		MaximumEventAgeInSeconds: aws.Int32(120),
		DestinationConfig: &types.DestinationConfig{
			OnFailure: &types.OnFailure{Destination: aws.String("arn:aws:sqs:us-east-1:000000000000:failed")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(put.FunctionArn) != arn+":$LATEST" || aws.ToInt32(put.MaximumRetryAttempts) != 1 ||
		aws.ToInt32(put.MaximumEventAgeInSeconds) != 120 || put.LastModified == nil {
		t.Fatalf("put output %+v", put)
	}
	if put.DestinationConfig == nil || put.DestinationConfig.OnFailure == nil ||
		aws.ToString(put.DestinationConfig.OnFailure.Destination) != "arn:aws:sqs:us-east-1:000000000000:failed" {
		t.Fatalf("destination config %+v", put.DestinationConfig)
	}

	// Update merges: retries change, age and destination stay.
	upd, err := c.UpdateFunctionEventInvokeConfig(ctx, &lambda.UpdateFunctionEventInvokeConfigInput{
		FunctionName:         aws.String(arn),
		MaximumRetryAttempts: aws.Int32(0),
		DestinationConfig: &types.DestinationConfig{
			OnSuccess: &types.OnSuccess{Destination: aws.String("arn:aws:lambda:us-east-1:000000000000:function:target")},
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
	if err != nil || aws.ToInt32(get.MaximumRetryAttempts) != 0 || aws.ToInt32(get.MaximumEventAgeInSeconds) != 120 {
		t.Fatalf("get output %+v %v", get, err)
	}

	// Out-of-range values: Lambda's ValidationException (400).
	for _, in := range []*lambda.PutFunctionEventInvokeConfigInput{
		{FunctionName: aws.String("cfgfn"), MaximumRetryAttempts: aws.Int32(3)},
		{FunctionName: aws.String("cfgfn"), MaximumRetryAttempts: aws.Int32(-1)},
		{FunctionName: aws.String("cfgfn"), MaximumEventAgeInSeconds: aws.Int32(59)},
		{FunctionName: aws.String("cfgfn"), MaximumEventAgeInSeconds: aws.Int32(21601)},
	} {
		if _, err := c.PutFunctionEventInvokeConfig(ctx, in); apiCode(err) != "ValidationException" {
			t.Errorf("put %d/%d: %v, want ValidationException", aws.ToInt32(in.MaximumRetryAttempts), aws.ToInt32(in.MaximumEventAgeInSeconds), err)
		}
	}
	_, err = c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName:      aws.String("cfgfn"),
		DestinationConfig: &types.DestinationConfig{OnSuccess: &types.OnSuccess{Destination: aws.String("arn:aws:sns:us-east-1:000000000000:topic")}},
	})
	var ipv *types.InvalidParameterValueException
	if !errors.As(err, &ipv) {
		t.Fatalf("sns destination: got %v, want InvalidParameterValueException", err)
	}
	var rnf *types.ResourceNotFoundException
	if _, err = c.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("nosuch")}); !errors.As(err, &rnf) {
		t.Fatalf("unknown function: got %v, want ResourceNotFoundException", err)
	}
	if _, err = c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("cfgfn"), Qualifier: aws.String("nosuch")}); !errors.As(err, &rnf) {
		t.Fatalf("unknown alias: got %v, want ResourceNotFoundException", err)
	}

	// An alias is a qualifier like a version.
	if _, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("cfgfn")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{FunctionName: aws.String("cfgfn"), Name: aws.String("beta"), FunctionVersion: aws.String("1")}); err != nil {
		t.Fatal(err)
	}
	al, err := c.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{FunctionName: aws.String("cfgfn"), Qualifier: aws.String("beta"), MaximumRetryAttempts: aws.Int32(2)})
	if err != nil || aws.ToString(al.FunctionArn) != arn+":beta" {
		t.Fatalf("put through alias: %+v %v", al, err)
	}
	list, err := c.ListFunctionEventInvokeConfigs(ctx, &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: aws.String("cfgfn"), MaxItems: aws.Int32(10)})
	if err != nil || len(list.FunctionEventInvokeConfigs) != 2 || list.NextMarker != nil {
		t.Fatalf("list %+v %v", list, err)
	}

	if _, err := c.DeleteFunctionEventInvokeConfig(ctx, &lambda.DeleteFunctionEventInvokeConfigInput{FunctionName: aws.String("cfgfn")}); err != nil {
		t.Fatal(err)
	}
	if _, err = c.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("cfgfn")}); !errors.As(err, &rnf) {
		t.Fatalf("after delete: got %v, want ResourceNotFoundException", err)
	}
	if _, err = c.DeleteFunctionEventInvokeConfig(ctx, &lambda.DeleteFunctionEventInvokeConfigInput{FunctionName: aws.String("cfgfn")}); !errors.As(err, &rnf) {
		t.Fatalf("second delete: got %v, want ResourceNotFoundException", err)
	}

	// Deleting the function deletes its configs: a new function of the
	// same name starts without any.
	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("cfgfn")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateFunction(ctx, createInput("cfgfn", zip)); err != nil {
		t.Fatal(err)
	}
	list, err = c.ListFunctionEventInvokeConfigs(ctx, &lambda.ListFunctionEventInvokeConfigsInput{FunctionName: aws.String("cfgfn")})
	if err != nil || len(list.FunctionEventInvokeConfigs) != 0 {
		t.Fatalf("list after re-create: %+v %v", list, err)
	}
}

func TestListEventInvokeConfigsPages(t *testing.T) {
	e, _ := newAsyncEnv(t)
	c := e.client
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.CreateFunction(ctx, createInput("paged", zipOf(t, map[string]string{"bootstrap": "x"}))); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("paged"), Description: aws.String(string(rune('a' + i)))}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("paged"), ZipFile: zipOf(t, map[string]string{"bootstrap": string(rune('a' + i))})}); err != nil {
			t.Fatal(err)
		}
	}
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
	seen := map[string]bool{}
	for _, a := range got {
		seen[a] = true
	}
	if len(got) != 4 || len(seen) != 4 {
		t.Fatalf("listed %v", got)
	}
	_, err := c.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("paged:1"), Qualifier: aws.String("2")})
	var ipv *types.InvalidParameterValueException
	if !errors.As(err, &ipv) {
		t.Fatalf("conflicting qualifiers: %v", err)
	}
	g, err := c.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String("paged:2")})
	if err != nil || aws.ToString(g.FunctionArn) != "arn:aws:lambda:us-east-1:000000000000:function:paged:2" {
		t.Fatalf("get paged:2: %+v %v", g, err)
	}
}
