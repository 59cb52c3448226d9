# bash completion for sbx-exec(1)                            -*- shell-script -*-
#
# Options come before the sandbox id (sbx-exec stops parsing there); what
# follows the id is a command in the guest, which we cannot complete.

_sbx_exec()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local i=1 j w id_idx=0 mode=run shell=0

	if [[ $cur == = ]]; then
		cur=
	elif [[ $prev == = && COMP_CWORD -ge 2 ]]; then
		prev=${COMP_WORDS[COMP_CWORD-2]}
	fi

	# Find the sandbox id: the first word that is not an option or an
	# option's argument.
	while ((i < COMP_CWORD)); do
		w=${COMP_WORDS[i]}
		case $w in
		--shell | --env | --workdir | --user | --timeout)
			[[ $w == --shell ]] && shell=1
			if [[ ${COMP_WORDS[i+1]} == = ]]; then
				((i += 3))
			else
				((i += 2))
			fi
			continue
			;;
		--shell=*) shell=1 ;;
		--history) mode=history ;;
		--ps) mode=ps ;;
		--attach) mode=attach ;;
		--kill) mode=kill ;;
		--)
			((i + 1 < COMP_CWORD)) && id_idx=$((i + 1))
			break
			;;
		--*) ;;
		-?*)
			# A cluster of short options; one taking an argument ends it.
			for ((j = 1; j < ${#w}; j++)); do
				case ${w:j:1} in
				c | e | w | u | T)
					[[ ${w:j:1} == c ]] && shell=1
					((j == ${#w} - 1)) && ((i++))
					break
					;;
				esac
			done
			;;
		*)
			id_idx=$i
			break
			;;
		esac
		((i++))
	done

	if ((id_idx == 0)); then
		case $prev in
		-c | --shell | -e | --env | -w | --workdir | -u | --user | -T | --timeout | \
			-[itbjhV]*[cewuT])
			# Free text, a guest path or user, a number.
			COMPREPLY=()
			return
			;;
		-h | --help | -V | --version)
			COMPREPLY=()
			return
			;;
		esac
		if [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W '-c --shell -e --env -w --workdir
				-u --user -T --timeout -i --interactive -t --tty
				-b --background --history --ps --attach --kill -j --json
				-h --help -V --version' -- "$cur")
			return
		fi
		local ids
		if [[ $mode == history ]]; then
			ids=$(sbx-ls -q -a 2>/dev/null) # history outlives the sandbox
		else
			ids=$(sbx-ls -q 2>/dev/null)
		fi
		mapfile -t COMPREPLY < <(compgen -W "$ids" -- "$cur")
		return
	fi

	local id=${COMP_WORDS[id_idx]} pos=$((COMP_CWORD - id_idx))
	case $mode in
	attach | kill)
		if ((pos == 1)); then
			mapfile -t COMPREPLY < <(compgen -W \
				"$(sbx-exec --ps "$id" 2>/dev/null | while read -r pid _; do echo "$pid"; done)" \
				-- "$cur")
		elif [[ $mode == kill ]] && ((pos == 2)); then
			mapfile -t COMPREPLY < <(compgen -W 'TERM INT HUP QUIT KILL USR1 USR2
				STOP CONT' -- "$cur")
		else
			COMPREPLY=()
		fi
		;;
	run)
		if ((pos == 1 && !shell)); then
			mapfile -t COMPREPLY < <(compgen -W '--' -- "$cur")
		else
			COMPREPLY=()
		fi
		;;
	*)
		COMPREPLY=()
		;;
	esac
}
complete -F _sbx_exec sbx-exec

# ex: filetype=sh
