/*
 * Application-processor start-up code for the smp test guest. The BSP copies ap_tramp to
 * AP_TRAMP_BASE and sends INIT-SIPI-SIPI; each AP starts there in real mode, switches to
 * long mode with the BSP's page tables and calls ap_main() on its own stack.
 */
#define AP_TRAMP_BASE 0x10000
#define REL(x) (AP_TRAMP_BASE + (x) - ap_tramp)

	.section .rodata
	.globl ap_tramp, ap_tramp_end, ap_tramp_cr3
	.code16
ap_tramp:
	cli
	mov	%cs, %ax
	mov	%ax, %ds
	lgdtl	(ap_gdt_ptr - ap_tramp)
	mov	%cr0, %eax
	or	$1, %eax
	mov	%eax, %cr0
	ljmpl	$0x08, $REL(ap_pm32)

	.code32
ap_pm32:
	mov	$0x10, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	mov	%cr4, %eax
	or	$0x20, %eax		/* PAE */
	mov	%eax, %cr4
	mov	REL(ap_tramp_cr3), %eax
	mov	%eax, %cr3
	mov	$0xc0000080, %ecx	/* EFER */
	rdmsr
	or	$0x100, %eax		/* LME */
	wrmsr
	mov	%cr0, %eax
	or	$0x80000000, %eax	/* PG */
	mov	%eax, %cr0
	ljmpl	$0x18, $REL(ap_lm64)

	.code64
ap_lm64:
	movabs	$ap_entry64, %rax
	jmp	*%rax

	.balign 8
ap_gdt:
	.quad	0
	.quad	0x00cf9a000000ffff	/* 0x08: 32-bit code */
	.quad	0x00cf92000000ffff	/* 0x10: data */
	.quad	0x00af9a000000ffff	/* 0x18: 64-bit code */
ap_gdt_ptr:
	.word	ap_gdt_ptr - ap_gdt - 1
	.long	REL(ap_gdt)
ap_tramp_cr3:
	.long	0
ap_tramp_end:

	.text
	.code64
ap_entry64:
	mov	$1, %eax
	lock xadd %eax, ap_ticket(%rip)
	/* Stack: ap_stacks + (ticket + 1) * 4096 */
	inc	%eax
	shl	$12, %rax
	lea	ap_stacks(%rip), %rsp
	add	%rax, %rsp
	call	ap_main
1:	cli
	hlt
	jmp	1b

	.bss
	.globl ap_ticket
	.balign 4096
ap_stacks:
	.space	4096 * 64
	.balign 4
ap_ticket:
	.long	0

	.section .note.GNU-stack, "", @progbits
