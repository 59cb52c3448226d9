# bash completion for sbx-timeout(1)                            -*- shell-script -*-

_sbx_timeout()
{
	local cur=${COMP_WORDS[COMP_CWORD]} i nargs=0

	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W '-j --json -h --help -V --version' -- "$cur")
		return
	fi
	for ((i = 1; i < COMP_CWORD; i++)); do
		[[ ${COMP_WORDS[i]} == -* ]] || nargs=$((nargs + 1))
	done
	# The id comes first; SECONDS follows it (a number: no completion).
	[ "$nargs" -eq 0 ] || return
	mapfile -t COMPREPLY < <(compgen -W "$(sbx-ls --json 2>/dev/null |
		jq -r '.[] | select(.state == "running" or .state == "paused") | .sandbox_id' 2>/dev/null)" -- "$cur")
}
complete -F _sbx_timeout sbx-timeout

# ex: filetype=sh
