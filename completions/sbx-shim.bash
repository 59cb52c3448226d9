# bash completion for sbx-shim(8)                            -*- shell-script -*-

_sbx_shim()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}

	case $prev in
	-l|--listen|--e2b-listen) return ;;
	-p|--port-file|--e2b-port-file) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
	--remove-sign-key)
		mapfile -t COMPREPLY < <(compgen -W "$(sbx-shim --sign-keys 2>/dev/null |
			sed -n '2,$s/ .*//p')" -- "$cur")
		return
		;;
	esac
	mapfile -t COMPREPLY < <(compgen -W '-l --listen -p --port-file --e2b-listen
		--e2b-port-file --sign-keys
		--rotate-sign-key --remove-sign-key -h --help -V --version' -- "$cur")
}
complete -F _sbx_shim sbx-shim

# ex: filetype=sh
