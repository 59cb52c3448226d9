# bash completion for sbx-doctor(8)                          -*- shell-script -*-

_sbx_doctor()
{
	local cur=${COMP_WORDS[COMP_CWORD]}

	mapfile -t COMPREPLY < <(compgen -W '-j --json -h --help -V --version' -- "$cur")
}
complete -F _sbx_doctor sbx-doctor

# ex: filetype=sh
