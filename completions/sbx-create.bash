# bash completion for sbx-create(1)                          -*- shell-script -*-

_sbx_create()
{
	# bash-completion's own parser; -s splits --opt=value.
	local cur prev words cword split
	_init_completion -s || return

	case $prev in
	-t | --template)
		local dir=${OMNIRUN_STATE_DIR:-/var/lib/omnirun}/templates
		mapfile -t COMPREPLY < <(compgen -W "$(ls "$dir" 2>/dev/null)" -- "$cur")
		return
		;;
	-c | --cpus | -m | --memory | -d | --disk | -P | --processes | -T | --timeout | -I | --idle-timeout | -a | --allow | -o | --owner)
		# A number or a host name: nothing to offer.
		COMPREPLY=()
		return
		;;
	--idle-action)
		mapfile -t COMPREPLY < <(compgen -W 'kill pause persist' -- "$cur")
		return
		;;
	-h | --help | -V | --version)
		COMPREPLY=()
		return
		;;
	esac

	mapfile -t COMPREPLY < <(compgen -W '-t --template -c --cpus -m --memory
		-d --disk -P --processes -T --timeout -I --idle-timeout --idle-action -a --allow -i --internet
		-o --owner -j --json -v --verbose -h --help
		-V --version' -- "$cur")
}
complete -F _sbx_create sbx-create

# ex: filetype=sh
