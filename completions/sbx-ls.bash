# bash completion for sbx-ls(1)                              -*- shell-script -*-

_sbx_ls()
{
	local cur=${COMP_WORDS[COMP_CWORD]}

	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W '-a --all -j --json -q --quiet
			-h --help -V --version' -- "$cur")
		return
	fi
	# Named sandboxes are listed in any state: offer stopped ones too.
	mapfile -t COMPREPLY < <(compgen -W "$(sbx-ls -q -a 2>/dev/null)" -- "$cur")
}
complete -F _sbx_ls sbx-ls

# ex: filetype=sh
