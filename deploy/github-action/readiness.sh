#!/usr/bin/env bash
# Asks keywatch whether READINESS_KEY is safe to retire (GET /v1/keys/{id}/readiness) every
# READINESS_POLL until it is, or READINESS_WAIT has passed, like `keywatch readiness --wait`.
#
# Environment: READINESS_URL, READINESS_TOKEN (read scope), READINESS_KEY, READINESS_WAIT and
# READINESS_POLL (<n>s, <n>m or <n>h). On GitHub Actions the answer also goes to the job summary
# ($GITHUB_STEP_SUMMARY) and the step's output `verdict` ($GITHUB_OUTPUT).
#
# Exit status: 0 safe or gone; 3 still unsafe when the wait ended (the remaining callers are
# printed); 1 no answer: unknown key, token refused, keywatch unreachable until the wait ended;
# 2 bad inputs.
set -uo pipefail

fail() { echo "readiness: $*" >&2; exit 2; }

# seconds turns <n>s, <n>m or <n>h (or plain seconds) into seconds.
seconds() {
	[[ $2 =~ ^([0-9]+)([smh]?)$ ]] || fail "$1 \"$2\": want <n>s, <n>m or <n>h"
	local n=$((10#${BASH_REMATCH[1]}))
	case ${BASH_REMATCH[2]} in
	h) echo $((n * 3600)) ;;
	m) echo $((n * 60)) ;;
	*) echo "$n" ;;
	esac
}

# urlencode percent-encodes every byte of $1 but the unreserved ones (RFC 3986).
urlencode() {
	local LC_ALL=C s=$1 out='' c i
	for ((i = 0; i < ${#s}; i++)); do
		c=${s:i:1}
		case $c in
		[A-Za-z0-9._~-]) out+=$c ;;
		*) printf -v c '%%%02X' "'$c"; out+=${c: -3} ;;
		esac
	done
	printf '%s' "$out"
}

[[ -n ${READINESS_URL:-} ]] || fail "READINESS_URL (input url) is empty"
[[ -n ${READINESS_TOKEN:-} ]] || fail "READINESS_TOKEN (input token) is empty"
[[ -n ${READINESS_KEY:-} ]] || fail "READINESS_KEY (input key) is empty"
wait_s=$(seconds wait "${READINESS_WAIT:-2h}") || exit 2
poll_s=$(seconds poll "${READINESS_POLL:-1m}") || exit 2
((poll_s >= 1)) || fail "poll must be at least 1s"

key=$READINESS_KEY
endpoint="${READINESS_URL%/}/v1/keys/$(urlencode "$key")/readiness"
body=$(mktemp)
trap 'rm -f "$body"' EXIT
deadline=$(($(date +%s) + wait_s))

# finish reports the verdict to the job summary and the step's output and exits with $2.
finish() {
	local verdict=$1 code=$2 headline=$3
	echo "$headline"
	[[ -s $body ]] && cat "$body"
	if [[ -n ${GITHUB_OUTPUT:-} ]]; then
		echo "verdict=$verdict" >>"$GITHUB_OUTPUT"
	fi
	if [[ -n ${GITHUB_STEP_SUMMARY:-} ]]; then
		{
			echo "### keywatch readiness: $verdict"
			echo
			echo "$headline"
			if [[ -s $body ]]; then
				echo
				# An indented code block: nothing in the answer (callers' user agents are written by
				# whoever calls the gateway) can end it or be rendered as Markdown or HTML.
				sed 's/^/    /' "$body"
			fi
		} >>"$GITHUB_STEP_SUMMARY"
	fi
	exit "$code"
}

while :; do
	code=$(curl --silent --show-error --max-time 60 --output "$body" --write-out '%{http_code}' \
		--header @<(printf 'Authorization: Bearer %s\n' "$READINESS_TOKEN") \
		--header 'Accept: text/plain' "$endpoint") || code=000
	verdict=unknown
	case $code in
	200)
		case $(head -c 6 "$body") in
		SAFE*) finish safe 0 "$key is safe to retire." ;;
		GONE*) finish gone 0 "$key is already out of use." ;;
		UNSAFE) verdict=unsafe ;;
		*) echo "readiness: unexpected answer from $endpoint" >&2 ;;
		esac
		;;
	404) finish unknown 1 "keywatch knows no key $key." ;;
	401 | 403) finish unknown 1 "keywatch refused the token (HTTP $code): give a token with read scope." ;;
	*) echo "readiness: no answer from $endpoint (HTTP $code): $(head -c 300 "$body" 2>/dev/null)" >&2 ;;
	esac
	now=$(date +%s)
	if ((now >= deadline)); then
		if [[ $verdict == unsafe ]]; then
			finish unsafe 3 "$key is still unsafe to retire after waiting ${READINESS_WAIT:-2h}: these callers still use it."
		fi
		: >"$body"
		finish unknown 1 "keywatch could not answer whether $key is safe to retire (last HTTP status $code)."
	fi
	next=$((deadline - now < poll_s ? deadline - now : poll_s))
	[[ $verdict == unsafe ]] && echo "readiness: $key is unsafe to retire; asking again in ${next}s" >&2
	sleep "$next"
done
