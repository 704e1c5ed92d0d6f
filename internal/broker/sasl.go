package broker

import (
	"context"
	"fmt"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/aws_msk_iam_v2"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/keywatch/keywatch/internal/config"
)

// newMechanism returns the SASL mechanism s names (nil for none) and, for aws-msk-iam, the
// region it signs for.
func newMechanism(s config.SASL) (sasl.Mechanism, string, error) {
	switch s.Mechanism {
	case "", config.SASLNone:
		return nil, "", nil
	case config.SASLPlain:
		return plain.Mechanism{Username: s.Username, Password: s.Password}, "", nil
	case config.SASLScramSHA256, config.SASLScramSHA512:
		algo := scram.SHA256
		if s.Mechanism == config.SASLScramSHA512 {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, s.Username, s.Password)
		if err != nil {
			// The SCRAM library's own message may quote what it could not prepare.
			return nil, "", fmt.Errorf("kafka.sasl.username / kafka.sasl.password: not usable with %s (SASLprep rejects them: control or unassigned characters?)", s.Mechanism)
		}
		return m, "", nil
	case config.SASLAWSMSKIAM:
		return mskIAM(s.AWSRegion)
	default:
		return nil, "", fmt.Errorf("kafka.sasl.mechanism: %q: want none, plain, scram-sha-256, scram-sha-512 or aws-msk-iam", s.Mechanism)
	}
}

// mskIAM signs with credentials from the AWS default chain (environment, shared files, web
// identity as IRSA gives it, container and instance roles), fetched and refreshed at each
// authentication; region, when empty, comes from the AWS environment.
func mskIAM(region string) (sasl.Mechanism, string, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if region != "" {
		opts = append(opts, awsconfig.WithRegion(region))
	}
	// Loading reads the environment and the shared files only; no request is sent, so there is
	// nothing for a caller's context to bound.
	awsCfg, err := awsconfig.LoadDefaultConfig(context.Background(), opts...)
	if err != nil {
		return nil, "", fmt.Errorf("kafka.sasl.mechanism aws-msk-iam: the AWS configuration (AWS_* variables, AWS_CONFIG_FILE, AWS_PROFILE): %w", err)
	}
	if awsCfg.Region == "" {
		return nil, "", fmt.Errorf("kafka.sasl.aws_region: empty, and the AWS environment names no region (AWS_REGION, or region in the profile's config): the MSK cluster's region is needed to sign")
	}
	return aws_msk_iam_v2.NewMechanism(awsCfg), awsCfg.Region, nil
}
