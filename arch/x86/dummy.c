/* placeholder until the x86 sources land */ int vmm_arch_placeholder_symbol;
