# bash completion for sbx-net(1)                             -*- shell-script -*-

_sbx_net()
{
	local cur prev words cword split
	_init_completion -s || return

	case $prev in
	-i | --internet)
		mapfile -t COMPREPLY < <(compgen -W 'on off' -- "$cur")
		return
		;;
	-a | --allow)
		COMPREPLY=()
		return
		;;
	-d | --deny)
		# The names on the sandbox's allow-list.
		local id w
		for w in "${words[@]:1}"; do [[ $w == sb_* ]] && id=$w && break; done
		[[ $id ]] && mapfile -t COMPREPLY < <(compgen -W "$(sbx-net --json "$id" policy 2>/dev/null |
			sed -n '/"allow"/,/]/s/^ *"\([^"]*\)",\{0,1\}$/\1/p')" -- "$cur")
		return
		;;
	-h | --help | -V | --version)
		COMPREPLY=()
		return
		;;
	esac

	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W '-i --internet -a --allow -d --deny -p --protected
			-j --json -h --help -V --version' -- "$cur")
		return
	fi
	# ID first, then the command.
	local i args=0
	for ((i = 1; i < cword; i++)); do
		case ${words[i]} in
		-i | --internet | -a | --allow | -d | --deny) ((i++)) ;;
		-*) ;;
		*) ((args++)) ;;
		esac
	done
	case $args in
	0) mapfile -t COMPREPLY < <(compgen -W "$(sbx-ls -q 2>/dev/null)" -- "$cur") ;;
	1) mapfile -t COMPREPLY < <(compgen -W 'policy stats expose unexpose exposures forward' \
		-- "$cur") ;;
	2)
		# unexpose: the sandbox's exposure ids.
		local id w
		for w in "${words[@]:1}"; do [[ $w == sb_* ]] && id=$w && break; done
		[[ ${words[cword - 1]} == unexpose && $id ]] &&
			mapfile -t COMPREPLY < <(compgen -W "$(sbx-net --json "$id" exposures 2>/dev/null |
				sed -n 's/.*"id": *"\(ex_[a-z2-7]*\)".*/\1/p')" -- "$cur")
		;;
	esac
}
complete -F _sbx_net sbx-net

# ex: filetype=sh
