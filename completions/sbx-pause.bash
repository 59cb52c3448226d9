# bash completion for sbx-pause(1)                            -*- shell-script -*-

_sbx_pause()
{
	local cur=${COMP_WORDS[COMP_CWORD]} i nargs=0

	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W '-p --persist -j --json -h --help -V --version' -- "$cur")
		return
	fi
	for ((i = 1; i < COMP_CWORD; i++)); do
		[[ ${COMP_WORDS[i]} == -* ]] || nargs=$((nargs + 1))
	done
	# The id comes first; nothing follows it.
	[ "$nargs" -eq 0 ] || return
	mapfile -t COMPREPLY < <(compgen -W "$(sbx-ls --json 2>/dev/null |
		jq -r '.[] | select(.state == "running") | .sandbox_id' 2>/dev/null)" -- "$cur")
}
complete -F _sbx_pause sbx-pause

# ex: filetype=sh
