# bash completion for sbx-shim(8)                            -*- shell-script -*-

_sbx_shim()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}

	case $prev in
	-l|--listen) return ;;
	-p|--port-file) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
	esac
	mapfile -t COMPREPLY < <(compgen -W '-l --listen -p --port-file -h --help
		-V --version' -- "$cur")
}
complete -F _sbx_shim sbx-shim

# ex: filetype=sh
