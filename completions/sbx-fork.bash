# bash completion for sbx-fork(1)                            -*- shell-script -*-

_sbx_fork()
{
	local cur=${COMP_WORDS[COMP_CWORD]} i nargs=0

	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W '-n --count -j --json -h --help -V --version' -- "$cur")
		return
	fi
	case ${COMP_WORDS[COMP_CWORD-1]} in
	-n | --count) return ;;
	esac
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		-n | --count) i=$((i + 1)) ;;
		-*) ;;
		*) nargs=$((nargs + 1)) ;;
		esac
	done
	# The id comes first; nothing follows it.
	[ "$nargs" -eq 0 ] || return
	mapfile -t COMPREPLY < <(compgen -W "$(sbx-ls --json 2>/dev/null |
		jq -r '.[] | select(.state == "running" or .state == "paused") | .sandbox_id' 2>/dev/null)" -- "$cur")
}
complete -F _sbx_fork sbx-fork

# ex: filetype=sh
