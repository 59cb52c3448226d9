# bash completion for sbx-pool(8)                            -*- shell-script -*-

_sbx_pool()
{
	local cur=${COMP_WORDS[COMP_CWORD]}

	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W '-j --json -q --quiet -h --help -V --version' \
			-- "$cur")
		return
	fi
	if [[ $COMP_CWORD -eq 1 ]]; then
		mapfile -t COMPREPLY < <(compgen -W 'ls fill drain' -- "$cur")
		return
	fi
	case ${COMP_WORDS[1]} in
	fill | drain)
		mapfile -t COMPREPLY < <(compgen -W \
			"$(sbx-pool ls --json 2>/dev/null | jq -r '.[].template' 2>/dev/null)" -- "$cur")
		;;
	esac
}
complete -F _sbx_pool sbx-pool

# ex: filetype=sh
