# bash completion for sbx-kill(1)                            -*- shell-script -*-

_sbx_kill()
{
	local cur=${COMP_WORDS[COMP_CWORD]}

	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W '-h --help -V --version' -- "$cur")
		return
	fi
	mapfile -t COMPREPLY < <(compgen -W "$(sbx-ls -q 2>/dev/null)" -- "$cur")
}
complete -F _sbx_kill sbx-kill

# ex: filetype=sh
