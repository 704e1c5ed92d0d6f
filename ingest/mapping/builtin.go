package mapping

import "slices"

// Builtin returns the built-in mapping called name: "keywatch" (the contract itself), "kong",
// "envoy", "aws-apigateway", "tyk", "nginx". ok is false for another name. The Spec is new on
// every call; the caller may change it.
func Builtin(name string) (spec Spec, ok bool) {
	switch name {
	case "keywatch":
		return keywatchSpec(), true
	case "kong":
		return kongSpec(), true
	case "envoy":
		return envoySpec(), true
	case "aws-apigateway":
		return awsSpec(), true
	case "tyk":
		return tykSpec(), true
	case "nginx":
		return nginxSpec(), true
	}
	return nil, false
}

// BuiltinNames lists the built-in mappings, sorted.
func BuiltinNames() []string {
	names := []string{"keywatch", "kong", "envoy", "aws-apigateway", "tyk", "nginx"}
	slices.Sort(names)
	return names
}

func fromPath(p string) Field { return Field{Path: p} }

// keywatchSpec is the event contract itself: every field at the top level under its own name.
func keywatchSpec() Spec {
	s := Spec{}
	for f := range numFields {
		s[fieldName(f)] = fromPath(fieldName(f))
	}
	return s
}

// kongSpec reads the JSON that Kong Gateway's http-log, tcp-log, udp-log, file-log and kafka-log
// plugins write, one request per object (for http-log, max_batch_size 1 or an exploding
// forwarder; a batch is a JSON array). Expected: the key-auth plugin, so that the credential
// (authenticated_entity.id, the key's id) and the consumer are known. The raw key is
// request.headers.apikey when key-auth's key_names keeps the default "apikey" and
// hide_credentials is false; with hide_credentials true it is gone and key_id alone identifies
// the key.
//
// route is the Kong route's name, not request.uri: the URI carries the query string, where
// key-auth also accepts the key (?apikey=...), so it would store secrets; name your routes.
// request.id exists from Kong 3.5. gateway is the Kong service's name.
func kongSpec() Spec {
	return Spec{
		"ts":         {Path: "started_at", Format: "epoch_ms"},
		"key_id":     fromPath("authenticated_entity.id"),
		"api_key":    fromPath("request.headers.apikey"),
		"client_id":  fromPath("consumer.username"),
		"status":     fromPath("response.status"),
		"ip":         fromPath("client_ip"),
		"user_agent": fromPath("request.headers.user-agent"),
		"method":     fromPath("request.method"),
		"route":      fromPath("route.name"),
		"request_id": fromPath("request.id"),
		"gateway":    fromPath("service.name"),
	}
}

// envoySpec reads an Envoy (or Istio) JSON access log, configured on the listener's access log
// with json_format or typed_json_format (numbers may be numbers or strings) and these keys:
//
//	start_time: "%START_TIME%"
//	method: "%REQ(:METHOD)%"
//	path: "%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%"
//	response_code: "%RESPONSE_CODE%"
//	downstream_remote_address: "%DOWNSTREAM_REMOTE_ADDRESS%"
//	user_agent: "%REQ(USER-AGENT)%"
//	request_id: "%REQ(X-REQUEST-ID)%"
//	authority: "%REQ(:AUTHORITY)%"
//	x_api_key: "%REQ(X-API-KEY)%"
//
// Use REQ_WITHOUT_QUERY for path: a query string can carry keys. Envoy knows no key ids nor
// clients, so the raw key (api_key) identifies the key. gateway is the authority the client
// called (the API's host name). "-", what Envoy writes for a value it does not have, reads as
// absent.
func envoySpec() Spec {
	dash := func(p string) Field { return Field{Path: p, Absent: []string{"-"}} }
	return Spec{
		"ts":         {Path: "start_time", Format: "rfc3339"},
		"api_key":    dash("x_api_key"),
		"status":     {Path: "response_code", Format: "text"},
		"ip":         {Path: "downstream_remote_address", StripPort: true, Absent: []string{"-"}},
		"user_agent": dash("user_agent"),
		"method":     dash("method"),
		"route":      dash("path"),
		"request_id": dash("request_id"),
		"gateway":    dash("authority"),
	}
}

// awsSpec reads an Amazon API Gateway REST API access log in JSON, the format AWS documents
// (stage settings, access log format) with these $context variables added:
//
//	{"requestId":"$context.requestId", "ip":"$context.identity.sourceIp",
//	 "requestTime":"$context.requestTime", "httpMethod":"$context.httpMethod",
//	 "resourcePath":"$context.resourcePath", "status":"$context.status",
//	 "userAgent":"$context.identity.userAgent", "apiKeyId":"$context.identity.apiKeyId",
//	 "apiId":"$context.apiId", ...}
//
// API keys are a REST API feature: apiKeyId is the key's id (key_id); API Gateway never logs the
// key itself. resourcePath is the route template (/v1/prices/{id}). requestTime is in Common Log
// Format, to the second; status is a string. gateway is the API's id. API Gateway writes "-"
// for a variable it does not have, which reads as absent.
func awsSpec() Spec {
	dash := func(p string) Field { return Field{Path: p, Absent: []string{"-"}} }
	return Spec{
		"ts":         {Path: "requestTime", Format: "clf"},
		"key_id":     dash("apiKeyId"),
		"status":     {Path: "status", Format: "text", Absent: []string{"-"}},
		"ip":         dash("ip"),
		"user_agent": dash("userAgent"),
		"method":     dash("httpMethod"),
		"route":      dash("resourcePath"),
		"request_id": dash("requestId"),
		"gateway":    dash("apiId"),
	}
}

// tykSpec reads a Tyk Pump analytics record as the Kafka pump writes it (the MongoDB and other
// pumps use the same names for these fields). api_key is what Tyk stores: with hash_keys on
// (the default), a hash of the key, not the key itself, so it is the key_id. client_id is the
// key's alias. timestamp is RFC 3339 with the gateway's offset. gateway is the Tyk API's id.
func tykSpec() Spec {
	return Spec{
		"ts":         {Path: "timestamp", Format: "rfc3339"},
		"key_id":     fromPath("api_key"),
		"client_id":  fromPath("alias"),
		"status":     fromPath("response_code"),
		"ip":         fromPath("ip_address"),
		"user_agent": fromPath("user_agent"),
		"method":     fromPath("method"),
		"route":      fromPath("path"),
		"gateway":    fromPath("api_id"),
	}
}

// nginxSpec reads an NGINX access log written with a JSON log_format and escape=json (which
// logs a missing variable as ""), with these variables:
//
//	log_format keywatch escape=json '{"msec":"$msec","remote_addr":"$remote_addr",'
//	  '"request_method":"$request_method","uri":"$uri","status":"$status",'
//	  '"http_user_agent":"$http_user_agent","request_id":"$request_id",'
//	  '"http_x_api_key":"$http_x_api_key","host":"$host"}';
//
// ts is $msec, epoch seconds with milliseconds ("1795622400.123"); $uri is the normalized path
// without the query string. The raw key comes from the X-API-Key header; NGINX knows no key ids.
// gateway is the host name the client called.
func nginxSpec() Spec {
	return Spec{
		"ts":         {Path: "msec", Format: "epoch_s"},
		"api_key":    fromPath("http_x_api_key"),
		"status":     {Path: "status", Format: "text"},
		"ip":         fromPath("remote_addr"),
		"user_agent": fromPath("http_user_agent"),
		"method":     fromPath("request_method"),
		"route":      fromPath("uri"),
		"request_id": fromPath("request_id"),
		"gateway":    fromPath("host"),
	}
}
