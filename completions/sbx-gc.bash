# bash completion for sbx-gc(8)                              -*- shell-script -*-

_sbx_gc()
{
	# bash-completion's own parser; -s splits --opt=value.
	local cur prev words cword split
	_init_completion -s || return

	case $prev in
	-p | --prune-days)
		mapfile -t COMPREPLY < <(compgen -W '7 30 90 365' -- "$cur")
		return
		;;
	-h | --help | -V | --version)
		COMPREPLY=()
		return
		;;
	esac
	mapfile -t COMPREPLY < <(compgen -W '-n --check -p --prune-days -b --boot -j --json
		-h --help -V --version' -- "$cur")
}
complete -F _sbx_gc sbx-gc

# ex: filetype=sh
