# bash completion for sbx-create(1)                          -*- shell-script -*-

_sbx_create()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}

	# --opt=value: bash splits at '=' (COMP_WORDBREAKS).
	if [[ $cur == = ]]; then
		cur=
	elif [[ $prev == = && COMP_CWORD -ge 2 ]]; then
		prev=${COMP_WORDS[COMP_CWORD-2]}
	fi

	case $prev in
	-t | --template)
		local dir=${OMNIRUN_STATE_DIR:-/var/lib/omnirun}/templates
		mapfile -t COMPREPLY < <(compgen -W "$(ls "$dir" 2>/dev/null)" -- "$cur")
		return
		;;
	-c | --cpus | -m | --memory | -d | --disk | -T | --timeout | -I | --idle-timeout)
		# A number: nothing to offer.
		COMPREPLY=()
		return
		;;
	-h | --help | -V | --version)
		COMPREPLY=()
		return
		;;
	esac

	mapfile -t COMPREPLY < <(compgen -W '-t --template -c --cpus -m --memory
		-d --disk -T --timeout -I --idle-timeout -j --json -h --help
		-V --version' -- "$cur")
}
complete -F _sbx_create sbx-create

# ex: filetype=sh
