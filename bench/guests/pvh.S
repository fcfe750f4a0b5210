/* Xen PVH entry for the benchmark guests: QEMU enters here in 32-bit protected mode, paging
 * off, EBX = hvm_start_info. This sets up what vmon sets up before entering a kernel (the
 * first 4 GiB identity-mapped with 2 MiB pages, a GDT with 0x10 = 64-bit code and 0x18 = data)
 * and continues at the common _start of tests/guests/start.S with RSI = 0.
 * vmon ignores the note and enters _start directly with RSI = boot_params. */

#define XEN_ELFNOTE_PHYS32_ENTRY 18

	.section .pvhnote, "a"
	.balign 4
	.long 4				/* name size */
	.long 4				/* descriptor size */
	.long XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.long pvh_entry32

	.text
	.code32
	.globl pvh_entry32
pvh_entry32:
	cli
	movl	%ebx, pvh_start_info
	lgdt	pvh_gdt_desc
	movl	%cr4, %eax
	orl	$0x20, %eax		/* PAE */
	movl	%eax, %cr4
	movl	$pvh_pml4, %eax
	movl	%eax, %cr3
	movl	$0xc0000080, %ecx	/* EFER.LME */
	rdmsr
	orl	$0x100, %eax
	wrmsr
	movl	%cr0, %eax
	orl	$0x80000001, %eax	/* PG | PE */
	movl	%eax, %cr0
	ljmp	$0x10, $pvh_entry64

	.code64
pvh_entry64:
	movl	$0x18, %eax
	movl	%eax, %ds
	movl	%eax, %es
	movl	%eax, %ss
	xorl	%esi, %esi
	jmp	_start

	.data
	.balign 8
	.globl pvh_start_info
pvh_start_info:
	.quad 0
pvh_gdt:
	.quad 0
	.quad 0
	.quad 0x00af9a000000ffff	/* 0x10: 64-bit code, DPL 0 */
	.quad 0x00cf92000000ffff	/* 0x18: data, DPL 0 */
pvh_gdt_end:
pvh_gdt_desc:
	.word pvh_gdt_end - pvh_gdt - 1
	.long pvh_gdt

	.balign 4096
pvh_pml4:
	.quad pvh_pdpt + 0x3
	.fill 511, 8, 0
pvh_pdpt:
	.quad pvh_pd + 0x0003
	.quad pvh_pd + 0x1003
	.quad pvh_pd + 0x2003
	.quad pvh_pd + 0x3003
	.fill 508, 8, 0
pvh_pd:
	.set page, 0
	.rept 2048
	.quad (page << 21) | 0x83	/* present, writable, 2 MiB */
	.set page, page + 1
	.endr

	.section .note.GNU-stack, "", @progbits
