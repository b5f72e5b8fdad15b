package sqsapi

import (
	"encoding/base64"
	"encoding/xml"
	"sort"

	"github.com/flintdev/flint/internal/sqs"
)

// input is the union of every operation's request members, as the JSON
// protocol names them; the query protocol's form is decoded into it too.
type input struct {
	QueueUrl                    string                               `json:"QueueUrl"`
	QueueName                   string                               `json:"QueueName"`
	QueueNamePrefix             string                               `json:"QueueNamePrefix"`
	QueueOwnerAWSAccountId      string                               `json:"QueueOwnerAWSAccountId"`
	MaxResults                  *int                                 `json:"MaxResults"`
	NextToken                   string                               `json:"NextToken"`
	Attributes                  map[string]string                    `json:"Attributes"`
	AttributeNames              []string                             `json:"AttributeNames"`
	MessageSystemAttributeNames []string                             `json:"MessageSystemAttributeNames"`
	MessageAttributeNames       []string                             `json:"MessageAttributeNames"`
	Tags                        map[string]string                    `json:"tags"`
	MessageBody                 *string                              `json:"MessageBody"`
	DelaySeconds                *int                                 `json:"DelaySeconds"`
	MessageAttributes           map[string]sqs.MessageAttributeValue `json:"MessageAttributes"`
	MaxNumberOfMessages         *int                                 `json:"MaxNumberOfMessages"`
	VisibilityTimeout           *int                                 `json:"VisibilityTimeout"`
	WaitTimeSeconds             *int                                 `json:"WaitTimeSeconds"`
	ReceiptHandle               string                               `json:"ReceiptHandle"`
	Entries                     []entry                              `json:"Entries"`
}

// entry is one entry of a batch request.
type entry struct {
	Id                string                               `json:"Id"`
	MessageBody       *string                              `json:"MessageBody"`
	DelaySeconds      *int                                 `json:"DelaySeconds"`
	MessageAttributes map[string]sqs.MessageAttributeValue `json:"MessageAttributes"`
	ReceiptHandle     string                               `json:"ReceiptHandle"`
	VisibilityTimeout *int                                 `json:"VisibilityTimeout"`
}

type queueURLResult struct {
	QueueUrl string `json:"QueueUrl" xml:"QueueUrl"`
}

type listQueuesResult struct {
	QueueUrls []string `json:"QueueUrls,omitempty" xml:"QueueUrl"`
	NextToken string   `json:"NextToken,omitempty" xml:"NextToken,omitempty"`
}

type attributesResult struct {
	Attributes attrMap `json:"Attributes,omitempty" xml:"Attribute"`
}

type sendResult struct {
	MessageId              string `json:"MessageId" xml:"MessageId"`
	MD5OfMessageBody       string `json:"MD5OfMessageBody" xml:"MD5OfMessageBody"`
	MD5OfMessageAttributes string `json:"MD5OfMessageAttributes,omitempty" xml:"MD5OfMessageAttributes,omitempty"`
}

type sendBatchEntry struct {
	Id string `json:"Id" xml:"Id"`
	sendResult
}

type batchError struct {
	Id          string `json:"Id" xml:"Id"`
	SenderFault bool   `json:"SenderFault" xml:"SenderFault"`
	Code        string `json:"Code" xml:"Code"`
	Message     string `json:"Message,omitempty" xml:"Message,omitempty"`
}

type idEntry struct {
	Id string `json:"Id" xml:"Id"`
}

type sendBatchResult struct {
	Successful []sendBatchEntry `json:"Successful" xml:"SendMessageBatchResultEntry"`
	Failed     []batchError     `json:"Failed" xml:"BatchResultErrorEntry"`
}

type deleteBatchResult struct {
	Successful []idEntry    `json:"Successful" xml:"DeleteMessageBatchResultEntry"`
	Failed     []batchError `json:"Failed" xml:"BatchResultErrorEntry"`
}

type visibilityBatchResult struct {
	Successful []idEntry    `json:"Successful" xml:"ChangeMessageVisibilityBatchResultEntry"`
	Failed     []batchError `json:"Failed" xml:"BatchResultErrorEntry"`
}

type receiveResult struct {
	Messages []message `json:"Messages,omitempty" xml:"Message"`
}

type message struct {
	MessageId              string     `json:"MessageId" xml:"MessageId"`
	ReceiptHandle          string     `json:"ReceiptHandle" xml:"ReceiptHandle"`
	MD5OfBody              string     `json:"MD5OfBody" xml:"MD5OfBody"`
	Body                   string     `json:"Body" xml:"Body"`
	Attributes             attrMap    `json:"Attributes,omitempty" xml:"Attribute"`
	MD5OfMessageAttributes string     `json:"MD5OfMessageAttributes,omitempty" xml:"MD5OfMessageAttributes,omitempty"`
	MessageAttributes      msgAttrMap `json:"MessageAttributes,omitempty" xml:"MessageAttribute"`
}

type tagsResult struct {
	Tags tagMap `json:"Tags,omitempty" xml:"Tag"`
}

// attrMap is a string map; in XML a flattened list of Name/Value pairs
// named by the field.
type attrMap map[string]string

func (m attrMap) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	return marshalPairs(e, start, m, "Name", "Value")
}

// tagMap is attrMap with Key/Value pairs.
type tagMap map[string]string

func (m tagMap) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	return marshalPairs(e, start, m, "Key", "Value")
}

func marshalPairs(e *xml.Encoder, start xml.StartElement, m map[string]string, k, v string) error {
	keys := make([]string, 0, len(m))
	for n := range m {
		keys = append(keys, n)
	}
	sort.Strings(keys)
	for _, n := range keys {
		pair := struct {
			K string `xml:"k"`
			V string `xml:"v"`
		}{n, m[n]}
		if err := e.EncodeToken(start); err != nil {
			return err
		}
		if err := e.EncodeElement(pair.K, xml.StartElement{Name: xml.Name{Local: k}}); err != nil {
			return err
		}
		if err := e.EncodeElement(pair.V, xml.StartElement{Name: xml.Name{Local: v}}); err != nil {
			return err
		}
		if err := e.EncodeToken(start.End()); err != nil {
			return err
		}
	}
	return nil
}

// msgAttrMap is message attributes; in XML a flattened list of
// Name/Value pairs whose Value has StringValue|BinaryValue and DataType.
type msgAttrMap map[string]sqs.MessageAttributeValue

func (m msgAttrMap) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	keys := make([]string, 0, len(m))
	for n := range m {
		keys = append(keys, n)
	}
	sort.Strings(keys)
	type value struct {
		StringValue *string `xml:"StringValue,omitempty"`
		BinaryValue string  `xml:"BinaryValue,omitempty"`
		DataType    string  `xml:"DataType"`
	}
	for _, n := range keys {
		a := m[n]
		v := value{StringValue: a.StringValue, DataType: a.DataType}
		if a.BinaryValue != nil {
			v.BinaryValue = base64.StdEncoding.EncodeToString(a.BinaryValue)
		}
		pair := struct {
			Name  string `xml:"Name"`
			Value value  `xml:"Value"`
		}{n, v}
		if err := e.EncodeElement(pair, start); err != nil {
			return err
		}
	}
	return nil
}
