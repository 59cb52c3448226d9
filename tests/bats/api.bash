# Shared by the API's bats files (55-expose, 60-api): curl against the
# shim at $URL.
#   api TOKEN METHOD PATH [curl args...]  prints the body and, on the last
#                                          line, the status
#   call TOKEN METHOD PATH [curl args...] the same, into STATUS and BODY
api() {
	local tok=$1 method=$2 path=$3
	shift 3
	curl -sS -m 60 -X "$method" ${tok:+-H "Authorization: Bearer $tok"} \
		-w '\n%{http_code}' "$@" "$URL$path"
}
call() {
	local out
	out=$(api "$@") || return
	STATUS=${out##*$'\n'}
	BODY=${out%$'\n'*}
	BODY=${BODY%$'\n'}
}
