// Package mapping owns turning one JSON log line of some gateway into the fields of keywatch's
// authentication event contract, through a compiled field mapping. It does not validate the event
// (ingest does) nor read Kafka.
//
// A [Spec] says, for each contract field, where a gateway's log line holds it (a dot-separated
// path of object keys) or which constant it takes. [Compile] checks a Spec and turns it into a
// [Mapping], whose [Mapping.Extract] reads a line in a single pass over its bytes: keys the
// mapping does not use are skipped (their syntax is still checked), matched values are kept as
// byte ranges and become Go strings only at the end.
//
// [Builtin] returns the mappings of the contract itself ("keywatch") and of common gateways'
// logs ("kong", "envoy", "aws-apigateway", "tyk", "nginx").
package mapping
