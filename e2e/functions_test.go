package e2e

// The test functions under testdata/ are built with aws-lambda-go, which
// go mod tidy cannot see there; this import keeps it in go.mod.
import _ "github.com/aws/aws-lambda-go/lambda"
