# bash completion for sbx-monitor(8)                         -*- shell-script -*-
# sbx-monitor is started by sbx-create and lives in libexec; this is for
# the odd debugging session.

_sbx_monitor()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}

	if [[ $cur == = ]]; then
		cur=
	elif [[ $prev == = && COMP_CWORD -ge 2 ]]; then
		prev=${COMP_WORDS[COMP_CWORD-2]}
	fi

	case $prev in
	--ready-fd)
		COMPREPLY=()
		return
		;;
	-h | --help | -V | --version)
		COMPREPLY=()
		return
		;;
	esac
	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W '--ready-fd -h --help -V --version' -- "$cur")
		return
	fi
	mapfile -t COMPREPLY < <(compgen -W "$(sbx-ls -q 2>/dev/null)" -- "$cur")
}
complete -F _sbx_monitor sbx-monitor

# ex: filetype=sh
