# bash completion for sbx-gc(8)                              -*- shell-script -*-

_sbx_gc()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}

	if [[ $cur == = ]]; then
		cur=
	elif [[ $prev == = && COMP_CWORD -ge 2 ]]; then
		prev=${COMP_WORDS[COMP_CWORD-2]}
	fi

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
	mapfile -t COMPREPLY < <(compgen -W '-n --check -p --prune-days -j --json
		-h --help -V --version' -- "$cur")
}
complete -F _sbx_gc sbx-gc

# ex: filetype=sh
