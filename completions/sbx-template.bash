# bash completion for sbx-template(1)                        -*- shell-script -*-

_sbx_template_installed()
{
	sbx-template ls 2>/dev/null | awk 'NR > 1 { print $1 }'
}

_sbx_template_recipes()
{
	local d r
	for d in "${OMNIRUN_RECIPES_DIR:-}" /usr/local/share/omnirun/templates \
		/usr/share/omnirun/templates; do
		[[ -n $d && -d $d ]] || continue
		for r in "$d"/*/recipe; do
			[[ -f $r ]] && r=${r%/recipe} && printf '%s\n' "${r##*/}"
		done
	done
}

_sbx_template()
{
	local cur=${COMP_WORDS[COMP_CWORD]} cmd='' i

	for ((i = 1; i < COMP_CWORD; i++)); do
		if [[ ${COMP_WORDS[i]} != -* ]]; then
			cmd=${COMP_WORDS[i]}
			break
		fi
	done
	if [[ -z $cmd ]]; then
		if [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W '-h --help -V --version' -- "$cur")
		else
			mapfile -t COMPREPLY < <(compgen -W 'build import snapshot ls rm' -- "$cur")
		fi
		return
	fi
	case $cmd in
	build)
		if [[ ${COMP_WORDS[COMP_CWORD - 1]} == @(-f|--from) ]]; then
			mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		elif [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W '-f --from -j --json -q --quiet --no-snapshot' -- "$cur")
		else
			mapfile -t COMPREPLY < <(compgen -W "$(_sbx_template_recipes)" -- "$cur")
		fi
		;;
	import)
		if [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W '-j --json -q --quiet' -- "$cur")
		elif ((COMP_CWORD - i >= 2)); then
			mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		fi
		;;
	snapshot)
		if [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W '-j --json -q --quiet' -- "$cur")
		else
			mapfile -t COMPREPLY < <(compgen -W "$(_sbx_template_installed)" -- "$cur")
		fi
		;;
	ls | list)
		mapfile -t COMPREPLY < <(compgen -W '-j --json' -- "$cur")
		;;
	rm)
		if [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W '--force' -- "$cur")
			return
		fi
		mapfile -t COMPREPLY < <(compgen -W "$(_sbx_template_installed)" -- "$cur")
		;;
	esac
}
complete -F _sbx_template sbx-template

# ex: filetype=sh
