# bash completion for sbx-files(1)                           -*- shell-script -*-
#
# sbx-files [--json] ID COMMAND [options] ARGS: host paths complete as
# files; guest paths are not completed.

_sbx_files_host()
{
	if declare -F _filedir >/dev/null; then
		_filedir
	else
		compopt -o filenames 2>/dev/null
		mapfile -t COMPREPLY < <(compgen -f -- "$cur")
	fi
}

_sbx_files()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local i=1 w id_idx=0 cmd_idx=0 cmd npos=0

	# The sandbox id is the first word that is not an option (no option of
	# sbx-files itself takes an argument); the command follows it.
	while ((i < COMP_CWORD)); do
		w=${COMP_WORDS[i]}
		if ((id_idx == 0)); then
			case $w in
			--)
				((i + 1 < COMP_CWORD)) && id_idx=$((i + 1))
				((i++))
				;;
			-?*) ;;
			*) id_idx=$i ;;
			esac
		elif ((cmd_idx == 0)); then
			cmd_idx=$i
			break
		fi
		((i++))
	done

	if ((id_idx == 0)); then
		case $prev in
		-h | --help | -V | --version)
			COMPREPLY=()
			return
			;;
		esac
		if [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W '-j --json -h --help -V --version' -- "$cur")
		else
			mapfile -t COMPREPLY < <(compgen -W "$(sbx-ls -q 2>/dev/null)" -- "$cur")
		fi
		return
	fi
	if ((cmd_idx == 0)); then
		mapfile -t COMPREPLY < <(compgen -W 'put get ls stat rm mkdir mv watch' -- "$cur")
		return
	fi
	cmd=${COMP_WORDS[cmd_idx]}

	if [[ $prev == -m && $cmd == put ]]; then
		mapfile -t COMPREPLY < <(compgen -W '0644 0600 0755 0700' -- "$cur")
		return
	fi
	# Count the arguments before the current word (-m takes one).
	for ((i = cmd_idx + 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		case $w in
		-m) ((i++)) ;;
		-?*) ;;
		*) ((npos++)) ;;
		esac
	done
	if [[ $cur == -* ]] && ((npos == 0)); then
		local opts=
		case $cmd in
		put) opts='-m -p -' ;;   # - is standard input
		get) opts='-f' ;;
		ls) opts='-l' ;;
		rm | watch) opts='-r' ;;
		mkdir) opts='-p' ;;
		esac
		mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
		return
	fi
	COMPREPLY=()
	case $cmd in
	put) ((npos == 0)) && _sbx_files_host ;;   # SRC on the host (or -)
	get) ((npos == 1)) && _sbx_files_host ;;   # DST on the host (or -)
	esac
	return 0
}
complete -F _sbx_files sbx-files

# ex: filetype=sh
