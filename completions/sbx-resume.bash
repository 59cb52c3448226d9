# bash completion for sbx-resume(1)                            -*- shell-script -*-

_sbx_resume()
{
	local cur=${COMP_WORDS[COMP_CWORD]} i nargs=0

	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W '-j --json -h --help -V --version' -- "$cur")
		return
	fi
	for ((i = 1; i < COMP_CWORD; i++)); do
		[[ ${COMP_WORDS[i]} == -* ]] || nargs=$((nargs + 1))
	done
	# The id comes first; nothing follows it.
	[ "$nargs" -eq 0 ] || return
	mapfile -t COMPREPLY < <(compgen -W "$(sbx-ls --json 2>/dev/null |
		jq -r '.[] | select(.state == "paused" or .state == "persisted") | .sandbox_id' 2>/dev/null)" -- "$cur")
}
complete -F _sbx_resume sbx-resume

# ex: filetype=sh
