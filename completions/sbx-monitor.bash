# bash completion for sbx-monitor(8)                         -*- shell-script -*-
# sbx-monitor is started by sbx-create and lives in libexec; this is for
# the odd debugging session.

_sbx_monitor()
{
	# bash-completion's own parser; -s splits --opt=value.
	local cur prev words cword split
	_init_completion -s || return

	case $prev in
	--ready-fd)
		COMPREPLY=()
		return
		;;
	--fill-pool)
		mapfile -t COMPREPLY < <(compgen -W \
			"$(sbx-pool ls --json 2>/dev/null | jq -r '.[].template' 2>/dev/null)" -- "$cur")
		return
		;;
	-h | --help | -V | --version)
		COMPREPLY=()
		return
		;;
	esac
	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W '--ready-fd --fill-pool -h --help -V --version' -- "$cur")
		return
	fi
	mapfile -t COMPREPLY < <(compgen -W "$(sbx-ls -q 2>/dev/null)" -- "$cur")
}
complete -F _sbx_monitor sbx-monitor

# ex: filetype=sh
