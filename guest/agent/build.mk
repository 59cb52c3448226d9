# omnirun-agent, included by the top GNUmakefile.
#
#   $(B)/guest/omnirun-agent       static musl binary, PID 1 of the guest
#   $(B)/guest/omnirun-agent-host  the same sources for the host (gcc, glibc),
#                                  for tests; SANITIZE=address,undefined adds
#                                  ASan+UBSan
#   $(B)/tests/test-agent          TAP test driving the host build
#   $(B)/tests/test-mkfs           TAP test of mkfs.c alone (e2fsck)
#   agent-check / agent-check-asan run the test (the latter in $(B)/asan)
#   agent-check-vm                 boots the static agent as PID 1 of a QEMU
#                                  microVM; AGENT_KERNEL_ROOT is the kernel:
#                                  by default the linux-image-*-cloud-amd64
#                                  package `sbx-template build tiny` keeps
#                                  in the cache (make check runs it too)

B ?= build
MUSL_CC ?= musl-gcc
HOST_CC ?= $(CC)
JANSSON_A ?= /usr/lib/x86_64-linux-gnu/libjansson.a
SANITIZE ?=
AGENT_KERNEL_CACHE = $(or $(OMNIRUN_CACHE_DIR),/var/cache/omnirun)/debs
AGENT_KERNEL_ROOT ?= $(lastword $(sort $(wildcard \
	$(AGENT_KERNEL_CACHE)/linux-image-*-cloud-amd64_*_amd64.deb)))

# The agent is built on libcore/base, compiled twice: for the guest with
# musl ($(B)/guest/libomr-base.a, from the same sources) and for the host
# (the host's own $(B)/libomr-base.a, which the host build links).
AGENT_SRCS := $(filter-out guest/agent/fortify-shim.c,$(wildcard guest/agent/*.c))
AGENT_HDRS := $(wildcard guest/agent/*.h) $(wildcard libcore/include/omnirun/base/*.h)
AGENT_WARN := -std=c17 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wpointer-arith -Wformat=2
AGENT_CPPFLAGS := -D_GNU_SOURCE -Ilibcore/include -Iguest/agent
AGENT_SANFLAGS := $(if $(SANITIZE),-fsanitize=$(SANITIZE) -fno-omit-frame-pointer)
GUEST_BASE_OBJS := $(patsubst libcore/base/%.c,$(B)/guest/base/%.o,$(wildcard libcore/base/*.c))
GUEST_BASE_LIB := $(B)/guest/libomr-base.a
HOST_BASE_LIB := $(B)/libomr-base.a

# musl ships no kernel or jansson headers: copy the host's (uapi headers
# are libc-neutral; jansson's are plain C).
$(B)/guest/inc/.stamp:
	mkdir -p $(B)/guest/inc
	cp /usr/include/jansson.h /usr/include/jansson_config.h $(B)/guest/inc/
	cp -r /usr/include/linux /usr/include/asm-generic $(B)/guest/inc/
	cp -r /usr/include/x86_64-linux-gnu/asm $(B)/guest/inc/
	touch $@

$(B)/guest/base/%.o: libcore/base/%.c $(B)/guest/inc/.stamp
	@mkdir -p $(@D)
	@echo "  CC  $@ (musl)"
	@$(MUSL_CC) -O2 $(AGENT_WARN) -isystem $(B)/guest/inc -D_GNU_SOURCE -Ilibcore/include \
		-MMD -MP -c $< -o $@

$(GUEST_BASE_LIB): $(GUEST_BASE_OBJS)
	@rm -f $@ && ar rcs $@ $^

$(B)/guest/omnirun-agent: $(AGENT_SRCS) guest/agent/fortify-shim.c $(AGENT_HDRS) \
		$(GUEST_BASE_LIB) $(B)/guest/inc/.stamp
	$(MUSL_CC) -static -O2 $(AGENT_WARN) -isystem $(B)/guest/inc $(AGENT_CPPFLAGS) \
		-o $@ $(AGENT_SRCS) guest/agent/fortify-shim.c $(GUEST_BASE_LIB) $(JANSSON_A)
	strip $@

$(B)/guest/omnirun-agent-host: $(AGENT_SRCS) $(AGENT_HDRS) $(HOST_BASE_LIB)
	@mkdir -p $(@D)
	$(HOST_CC) -O1 -g $(AGENT_WARN) $(AGENT_CPPFLAGS) $(AGENT_SANFLAGS) \
		-o $@ $(AGENT_SRCS) $(HOST_BASE_LIB) -ljansson

$(B)/tests/test-agent: tests/unit/test-agent.c tests/unit/tap.h $(HOST_BASE_LIB) $(AGENT_HDRS)
	@mkdir -p $(@D)
	$(HOST_CC) -O1 -g $(AGENT_WARN) -D_GNU_SOURCE -Ilibcore/include $(AGENT_SANFLAGS) \
		-o $@ tests/unit/test-agent.c $(HOST_BASE_LIB) -ljansson

# The agent's ext2 writer alone, checked with e2fsck on the host.
$(B)/tests/test-mkfs: tests/unit/test-mkfs.c tests/unit/tap.h guest/agent/mkfs.c guest/agent/mkfs.h
	@mkdir -p $(@D)
	$(HOST_CC) -O1 -g $(AGENT_WARN) -D_GNU_SOURCE -Iguest/agent $(AGENT_SANFLAGS) \
		-o $@ tests/unit/test-mkfs.c guest/agent/mkfs.c

-include $(GUEST_BASE_OBJS:.o=.d)

.PHONY: agent-check agent-check-asan agent-check-vm
agent-check: $(B)/guest/omnirun-agent-host $(B)/tests/test-agent
	$(B)/tests/test-agent $(B)/guest/omnirun-agent-host

agent-check-asan:
	$(MAKE) -f $(firstword $(MAKEFILE_LIST)) B=$(B)/asan SANITIZE=address,undefined agent-check

agent-check-vm: $(B)/guest/omnirun-agent $(B)/tests/test-agent
	tests/unit/test-agent-vm.sh $(B)/guest/omnirun-agent $(B)/tests/test-agent \
		"$(AGENT_KERNEL_ROOT)"
