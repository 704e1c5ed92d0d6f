package broker

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/aws_msk_iam_v2"

	"github.com/keywatch/keywatch/internal/config"
)

// awsEnvironment gives the AWS default chain these keys and nothing from this machine: empty
// shared files, no profile, no instance metadata.
func awsEnvironment(t *testing.T, region string) {
	t.Helper()
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"AWS_CONFIG_FILE": empty, "AWS_SHARED_CREDENTIALS_FILE": empty, "AWS_EC2_METADATA_DISABLED": "true",
		"AWS_ACCESS_KEY_ID": "AKIAKEYWATCHTEST0001", "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYkeywatchtest",
		"AWS_SESSION_TOKEN": "session-token-from-irsa", "AWS_REGION": region, "AWS_DEFAULT_REGION": "",
		"AWS_PROFILE": "", "AWS_WEB_IDENTITY_TOKEN_FILE": "", "AWS_ROLE_ARN": "",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
	} {
		t.Setenv(k, v)
	}
}

func TestAWSMSKIAMSignsWithTheDefaultChain(t *testing.T) {
	awsEnvironment(t, "eu-west-1")
	ctx := context.Background()
	c, err := New(config.Kafka{TLS: config.KafkaTLS{Enabled: true}, SASL: config.SASL{Mechanism: config.SASLAWSMSKIAM}})
	if err != nil {
		t.Fatal(err)
	}
	m, ok := c.mechanism.(*aws_msk_iam_v2.Mechanism)
	if !ok {
		t.Fatalf("mechanism is %T, want *aws_msk_iam_v2.Mechanism", c.mechanism)
	}
	if m.Name() != "AWS_MSK_IAM" || m.Region != "eu-west-1" {
		t.Errorf("mechanism %s in region %q, want AWS_MSK_IAM in eu-west-1 (AWS_REGION)", m.Name(), m.Region)
	}
	creds, err := m.Credentials.Retrieve(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if creds.AccessKeyID != "AKIAKEYWATCHTEST0001" || creds.SessionToken != "session-token-from-irsa" {
		t.Errorf("credentials %s (token %q), want the environment's", creds.AccessKeyID, creds.SessionToken)
	}

	// What the first SASL message carries to the broker: a SigV4-presigned kafka-cluster:Connect.
	_, payload, err := m.Start(sasl.WithMetadata(ctx, &sasl.Metadata{Host: "b-1.keywatch.abc123.kafka.eu-west-1.amazonaws.com", Port: 9098}))
	if err != nil {
		t.Fatal(err)
	}
	var signed map[string]string
	if err := json.Unmarshal(payload, &signed); err != nil {
		t.Fatalf("payload %s: %v", payload, err)
	}
	today := time.Now().UTC().Format("20060102")
	for k, want := range map[string]string{
		"version": "2020_10_22", "action": "kafka-cluster:Connect", "x-amz-algorithm": "AWS4-HMAC-SHA256",
		"host":                 "b-1.keywatch.abc123.kafka.eu-west-1.amazonaws.com",
		"x-amz-credential":     "AKIAKEYWATCHTEST0001/" + today + "/eu-west-1/kafka-cluster/aws4_request",
		"x-amz-security-token": "session-token-from-irsa",
	} {
		if signed[k] != want {
			t.Errorf("%s = %q, want %q", k, signed[k], want)
		}
	}
	if len(signed["x-amz-signature"]) != 64 {
		t.Errorf("x-amz-signature = %q, want 64 hex digits", signed["x-amz-signature"])
	}
	if strings.Contains(string(payload), "wJalrXUtnFEMI") {
		t.Error("the payload holds the secret access key")
	}
	if got := c.Mechanism(); !strings.Contains(got, "aws-msk-iam") || !strings.Contains(got, "region eu-west-1") {
		t.Errorf("Mechanism() = %q", got)
	}
}

func TestAWSMSKIAMRegion(t *testing.T) {
	awsEnvironment(t, "us-east-2")
	c, err := New(config.Kafka{TLS: config.KafkaTLS{Enabled: true}, SASL: config.SASL{Mechanism: config.SASLAWSMSKIAM, AWSRegion: "ap-south-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.mechanism.(*aws_msk_iam_v2.Mechanism).Region; got != "ap-south-1" {
		t.Errorf("region %q, want kafka.sasl.aws_region's ap-south-1 over AWS_REGION", got)
	}

	awsEnvironment(t, "")
	_, err = New(config.Kafka{TLS: config.KafkaTLS{Enabled: true}, SASL: config.SASL{Mechanism: config.SASLAWSMSKIAM}})
	if err == nil || !strings.Contains(err.Error(), "kafka.sasl.aws_region") {
		t.Errorf("no region anywhere: %v, want an error naming kafka.sasl.aws_region", err)
	}
}
