package frontend

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

func TestTagsThroughSDK(t *testing.T) {
	e := newEnv(t)
	c := e.client
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	zip := zipOf(t, map[string]string{"bootstrap": "x"})
	in := createInput("tagged", zip)
	in.Tags = map[string]string{"team": "core", "env": "dev"}
	created, err := c.CreateFunction(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(created.FunctionArn)
	get, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("tagged")})
	if err != nil || !maps.Equal(get.Tags, in.Tags) {
		t.Fatalf("GetFunction tags %v %v, want %v", get.Tags, err, in.Tags)
	}
	rev := aws.ToString(get.Configuration.RevisionId)

	if _, err := c.TagResource(ctx, &lambda.TagResourceInput{Resource: aws.String(arn), Tags: map[string]string{"env": "prod", "owner": "me"}}); err != nil {
		t.Fatal(err)
	}
	lt, err := c.ListTags(ctx, &lambda.ListTagsInput{Resource: aws.String(arn)})
	want := map[string]string{"team": "core", "env": "prod", "owner": "me"}
	if err != nil || !maps.Equal(lt.Tags, want) {
		t.Fatalf("ListTags %v %v, want %v", lt, err, want)
	}
	if _, err := c.UntagResource(ctx, &lambda.UntagResourceInput{Resource: aws.String(arn), TagKeys: []string{"team", "absent"}}); err != nil {
		t.Fatal(err)
	}
	lt, err = c.ListTags(ctx, &lambda.ListTagsInput{Resource: aws.String(arn)})
	if err != nil || !maps.Equal(lt.Tags, map[string]string{"env": "prod", "owner": "me"}) {
		t.Fatalf("after untag: %v %v", lt.Tags, err)
	}
	// Tags are not part of the function's revision.
	cfg, err := c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("tagged")})
	if err != nil || aws.ToString(cfg.RevisionId) != rev {
		t.Fatalf("revision changed by tagging: %s -> %s (%v)", rev, aws.ToString(cfg.RevisionId), err)
	}

	// Lambda's limits and errors.
	many := map[string]string{}
	for i := range 49 {
		many[fmt.Sprintf("k%02d", i)] = "v"
	}
	if _, err := c.TagResource(ctx, &lambda.TagResourceInput{Resource: aws.String(arn), Tags: many}); apiCode(err) != "InvalidParameterValueException" {
		t.Errorf("51 tags: %v, want InvalidParameterValueException", err)
	}
	delete(many, "k00")
	if _, err := c.TagResource(ctx, &lambda.TagResourceInput{Resource: aws.String(arn), Tags: many}); err != nil {
		t.Errorf("50 tags: %v", err)
	}
	for name, tags := range map[string]map[string]string{
		"aws: prefix":  {"aws:x": "v"},
		"long key":     {string(make([]byte, 129)): "v"},
		"long value":   {"k": string(make([]byte, 257))},
		"empty key":    {"": "v"},
		"create limit": nil,
	} {
		if tags == nil {
			in := createInput("too-many-tags", zip)
			in.Tags = map[string]string{}
			for i := range 51 {
				in.Tags[fmt.Sprintf("k%02d", i)] = "v"
			}
			if _, err := c.CreateFunction(ctx, in); apiCode(err) != "InvalidParameterValueException" {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if _, err := c.TagResource(ctx, &lambda.TagResourceInput{Resource: aws.String(arn), Tags: tags}); apiCode(err) != "InvalidParameterValueException" {
			t.Errorf("%s: %v, want InvalidParameterValueException", name, err)
		}
	}
	if _, err := c.ListTags(ctx, &lambda.ListTagsInput{Resource: aws.String(arn + "x")}); apiCode(err) != "ResourceNotFoundException" {
		t.Errorf("unknown function: %v", err)
	}
	if _, err := c.ListTags(ctx, &lambda.ListTagsInput{Resource: aws.String("tagged")}); apiCode(err) != "ValidationException" {
		t.Errorf("name instead of ARN: %v", err)
	}
	if _, err := c.ListTags(ctx, &lambda.ListTagsInput{Resource: aws.String(arn + ":1")}); apiCode(err) != "InvalidParameterValueException" {
		t.Errorf("qualified ARN: %v", err)
	}

	// Deleting the function deletes its tags.
	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("tagged")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateFunction(ctx, createInput("tagged", zip)); err != nil {
		t.Fatal(err)
	}
	lt, err = c.ListTags(ctx, &lambda.ListTagsInput{Resource: aws.String(arn)})
	if err != nil || len(lt.Tags) != 0 {
		t.Fatalf("tags of a new function of the same name: %v %v", lt.Tags, err)
	}
}
