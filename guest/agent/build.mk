# omnirun-agent, included by the top GNUmakefile.
#
#   $(B)/guest/omnirun-agent       static musl binary, PID 1 of the guest
#   $(B)/guest/omnirun-agent-host  the same sources for the host (gcc, glibc),
#                                  for tests; SANITIZE=address,undefined adds
#                                  ASan+UBSan
#   $(B)/tests/test-agent          TAP test driving the host build
#   agent-check / agent-check-asan run the test (the latter in $(B)/asan)
#   agent-check-vm                 boots the static agent as PID 1 of a QEMU
#                                  microVM (needs AGENT_KERNEL_ROOT: an
#                                  extracted linux-image-*-cloud-amd64)

B ?= build
MUSL_CC ?= musl-gcc
HOST_CC ?= $(CC)
JANSSON_A ?= /usr/lib/x86_64-linux-gnu/libjansson.a
SANITIZE ?=
AGENT_KERNEL_ROOT ?=

AGENT_SRCS := $(filter-out guest/agent/fortify-shim.c,$(wildcard guest/agent/*.c)) \
	libcore/base/proto.c libcore/base/cleanup.c libcore/base/io.c
AGENT_HDRS := $(wildcard guest/agent/*.h) libcore/include/omnirun/base/proto.h \
	libcore/include/omnirun/base/cleanup.h libcore/include/omnirun/base/io.h
AGENT_WARN := -std=c17 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	-Wmissing-prototypes -Wpointer-arith -Wformat=2
AGENT_CPPFLAGS := -D_GNU_SOURCE -Ilibcore/include -Iguest/agent
AGENT_SANFLAGS := $(if $(SANITIZE),-fsanitize=$(SANITIZE) -fno-omit-frame-pointer)

# musl ships no kernel or jansson headers: copy the host's (uapi headers
# are libc-neutral; jansson's are plain C).
$(B)/guest/inc/.stamp:
	mkdir -p $(B)/guest/inc
	cp /usr/include/jansson.h /usr/include/jansson_config.h $(B)/guest/inc/
	cp -r /usr/include/linux /usr/include/asm-generic $(B)/guest/inc/
	cp -r /usr/include/x86_64-linux-gnu/asm $(B)/guest/inc/
	touch $@

$(B)/guest/omnirun-agent: $(AGENT_SRCS) guest/agent/fortify-shim.c $(AGENT_HDRS) \
		$(B)/guest/inc/.stamp
	$(MUSL_CC) -static -O2 $(AGENT_WARN) -isystem $(B)/guest/inc $(AGENT_CPPFLAGS) \
		-o $@ $(AGENT_SRCS) guest/agent/fortify-shim.c $(JANSSON_A)
	strip $@

$(B)/guest/omnirun-agent-host: $(AGENT_SRCS) $(AGENT_HDRS)
	@mkdir -p $(@D)
	$(HOST_CC) -O1 -g $(AGENT_WARN) $(AGENT_CPPFLAGS) $(AGENT_SANFLAGS) \
		-o $@ $(AGENT_SRCS) -ljansson

$(B)/tests/test-agent: tests/unit/test-agent.c tests/unit/tap.h libcore/base/proto.c libcore/base/io.c \
		libcore/include/omnirun/base/proto.h libcore/include/omnirun/base/io.h
	@mkdir -p $(@D)
	$(HOST_CC) -O1 -g $(AGENT_WARN) -D_GNU_SOURCE -Ilibcore/include $(AGENT_SANFLAGS) \
		-o $@ tests/unit/test-agent.c libcore/base/proto.c libcore/base/io.c -ljansson

.PHONY: agent-check agent-check-asan agent-check-vm
agent-check: $(B)/guest/omnirun-agent-host $(B)/tests/test-agent
	$(B)/tests/test-agent $(B)/guest/omnirun-agent-host

agent-check-asan:
	$(MAKE) -f $(firstword $(MAKEFILE_LIST)) B=$(B)/asan SANITIZE=address,undefined agent-check

agent-check-vm: $(B)/guest/omnirun-agent $(B)/tests/test-agent
	tests/unit/test-agent-vm.sh $(B)/guest/omnirun-agent $(B)/tests/test-agent \
		"$(AGENT_KERNEL_ROOT)"
