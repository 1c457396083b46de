# mamlrun: make (build), make test, make run, make bench, make sanitize, make install
PKGS     := lua5.4 openblas libpng
CC       ?= cc
OPT      ?= -O2 -march=x86-64-v2 -mtune=generic
CFLAGS   ?= $(OPT) -g
CFLAGS   += -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Ivm -Iops \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread -ldl
PREFIX   ?= /usr/local
BUILD    ?= build

CORE_SRC := $(filter-out vm/main.c,$(wildcard vm/*.c)) $(wildcard ops/*.c)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
HEADERS  := $(wildcard vm/*.h ops/*.h)
CTESTS   := $(patsubst tests/c/%.c,$(BUILD)/tests/%,$(wildcard tests/c/test_*.c))

.PHONY: all test run bench sanitize install data format clean deps check-deps

all: mamlrun

$(BUILD)/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libmamlrun.a: $(CORE_OBJ)
	@rm -f $@
	ar rcs $@ $^

mamlrun: $(BUILD)/vm/main.o $(BUILD)/libmamlrun.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/c/%.c $(BUILD)/libmamlrun.a $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libmamlrun.a $(LDLIBS)

ctests: $(CTESTS)

test: mamlrun $(CTESTS)
	@tests/run_all.sh

# mamlrun finds its Lua library at <prefix>/share/mamlrun/lua (see vm/main.c)
install: mamlrun
	install -d '$(DESTDIR)$(PREFIX)/bin' '$(DESTDIR)$(PREFIX)/share/mamlrun/lua'
	install -m 755 mamlrun '$(DESTDIR)$(PREFIX)/bin/mamlrun'
	cd lua && find . -name '*.lua' -exec install -D -m 644 {} \
	  '$(abspath $(DESTDIR)$(PREFIX))/share/mamlrun/lua/{}' \;

