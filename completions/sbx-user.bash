# bash completion for sbx-user(8)                            -*- shell-script -*-

_sbx_user()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}

	case $prev in
	-n|--name) return ;;
	esac
	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W '-n --name -a --admin -j --json
			-h --help -V --version' -- "$cur")
		return
	fi
	if [[ $COMP_CWORD -eq 1 ]]; then
		mapfile -t COMPREPLY < <(compgen -W 'add token ls revoke rm limit audit' -- "$cur")
		return
	fi
	case ${COMP_WORDS[1]} in
	token|rm|limit|audit)
		[[ $COMP_CWORD -eq 2 ]] && mapfile -t COMPREPLY < <(compgen -W \
			"$(sbx-user ls --json 2>/dev/null | jq -r '.users[].email' 2>/dev/null)" -- "$cur")
		[[ ${COMP_WORDS[1]} == limit && $COMP_CWORD -eq 3 ]] &&
			mapfile -t COMPREPLY < <(compgen -W 'default none' -- "$cur")
		;;
	revoke)
		mapfile -t COMPREPLY < <(compgen -W \
			"$(sbx-user ls --json 2>/dev/null | jq -r '.tokens[].id' 2>/dev/null)" -- "$cur")
		;;
	esac
}
complete -F _sbx_user sbx-user

# ex: filetype=sh
