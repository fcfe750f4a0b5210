/* Entry of every test guest: vmon enters here in long mode at CPL0 with RSI = boot_params. */
	.section .text.start, "ax"
	.globl _start
	.code64
_start:
	cli
	lea	stack_top(%rip), %rsp
	mov	%rsi, %rdi
	call	guest_main
	/* guest_main returned: report failure the loud way. */
	call	guest_fail_triple_fault

	.bss
	.balign 16
	.space 16384
stack_top:

	.section .note.GNU-stack, "", @progbits
