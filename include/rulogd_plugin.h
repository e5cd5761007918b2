/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rulogd_plugin.h: the C ABI of rulogd's external plugins, version 1.
 *
 * A plugin is a shared object that exports one function,
 *
 *     const struct rulogd_plugin *rulogd_plugin_descriptor(void);
 *
 * returning a descriptor that lives as long as the process (rulogd never
 * unloads a plugin). ulogd.conf names the file with plugin="/path/lib.so";
 * the plugin's name then works in stack= lines like a built-in's.
 *
 * Versioning: abi_version must equal RULOGD_PLUGIN_ABI_VERSION of the
 * daemon, or the daemon refuses to start and says both versions. Within
 * one version, structures only grow at their end and every structure the
 * plugin hands over starts with its size, so a newer daemon can read an
 * older plugin's descriptor; anything else is a new version.
 *
 * Threads (what may call what):
 *   - main thread, before any record:  configure, start, writer_open
 *   - input thread (one per input instance; an instance is only ever
 *     called from one thread):          process, tick, signal, format,
 *                                        destroy
 *   - the output's writer thread (one per output instance id):
 *                                        writer_write, writer_reopen,
 *                                        writer_close
 *   An output's format (input thread) and writer_write (writer thread) run
 *   concurrently: they must not share mutable state without locking.
 *   The host functions may be called from any of these callbacks, on the
 *   thread the callback runs on; none of them blocks.
 *
 * Memory: every pointer the daemon hands over (record values, option
 * strings, batches) is valid only until the callback returns. Values are
 * never copied on the way to the plugin: strings and raw bytes point into
 * the receive buffer or the record. A plugin that crashes takes the daemon
 * with it: unlike a panic of a Rust plugin built with the SDK, a C plugin's
 * fault cannot be contained.
 */
#ifndef RULOGD_PLUGIN_H
#define RULOGD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RULOGD_PLUGIN_ABI_VERSION 1u
/* The symbol the daemon looks up. */
#define RULOGD_PLUGIN_SYMBOL "rulogd_plugin_descriptor"

/* Plugin kinds (ABI 1 loads filters and outputs; an input is refused). */
#define RULOGD_KIND_INPUT 0u
#define RULOGD_KIND_FILTER 1u
#define RULOGD_KIND_OUTPUT 2u

/* Key types: ulogd's ULOGD_RET_* values. */
#define RULOGD_TYPE_NONE 0x0000u
#define RULOGD_TYPE_INT8 0x0001u
#define RULOGD_TYPE_INT16 0x0002u
#define RULOGD_TYPE_INT32 0x0003u
#define RULOGD_TYPE_INT64 0x0004u
#define RULOGD_TYPE_UINT8 0x0011u
#define RULOGD_TYPE_UINT16 0x0012u
#define RULOGD_TYPE_UINT32 0x0013u
#define RULOGD_TYPE_UINT64 0x0014u
#define RULOGD_TYPE_BOOL 0x0050u
#define RULOGD_TYPE_IPADDR 0x0100u /* IPv4 or IPv6: len says which */
#define RULOGD_TYPE_STRING 0x8020u
#define RULOGD_TYPE_RAW 0x8030u
#define RULOGD_TYPE_RAWSTR 0x8040u

/* Key flags: ulogd's ULOGD_KEYF_* values. */
#define RULOGD_KEYF_OPTIONAL 0x0100u /* input key: the stack builds without it */
#define RULOGD_KEYF_INACTIVE 0x0200u /* input key: ignored */

/* One key. Input keys bind by name to the nearest upstream producer when
 * the stack is built; at run time a key is addressed by its index in the
 * plugin's own table. */
struct rulogd_key {
	const char *name;     /* ulogd's key name, e.g. "ip.saddr" */
	uint16_t type;        /* RULOGD_TYPE_* */
	uint16_t flags;       /* RULOGD_KEYF_* */
	uint32_t reserved;    /* 0 */
	const char *cim_name; /* JSON name, or NULL */
};

/* Option types. */
#define RULOGD_OPT_INT 0u
#define RULOGD_OPT_STRING 1u
/* Option flags. */
#define RULOGD_OPTF_MANDATORY 0x1u

/* One option of the plugin's config section. Integers are checked against
 * [min, max] before configure is called, at the option's file:line. */
struct rulogd_option {
	const char *name;
	uint32_t type;             /* RULOGD_OPT_* */
	uint32_t flags;            /* RULOGD_OPTF_* */
	const char *default_value; /* as written in a config file; not NULL */
	const char *help;          /* one line for --info, or NULL */
	int64_t min, max;          /* RULOGD_OPT_INT: inclusive bounds */
};

/* A configured option value, in the order of the option table. */
struct rulogd_optval {
	int64_t i;     /* RULOGD_OPT_INT */
	const char *s; /* RULOGD_OPT_STRING: NUL-terminated */
	size_t len;    /* strlen(s) */
};

/* What configure and writer_open are given. */
struct rulogd_config {
	const char *instance; /* the instance id, e.g. "csv1" */
	uint32_t n_options;
	uint32_t reserved;
	const struct rulogd_optval *options;
};

/* A value. Integers of every width travel as i (signed) or u (unsigned,
 * also BOOL); IPADDR as 4 or 16 bytes in network order; STRING, RAW and
 * RAWSTR as ptr + len, not NUL-terminated. */
struct rulogd_value {
	uint16_t type; /* RULOGD_TYPE_* */
	uint16_t reserved;
	uint32_t len; /* bytes at ptr, or 4/16 for IPADDR */
	union {
		int64_t i;
		uint64_t u;
		uint8_t addr[16];
		const uint8_t *ptr;
	} v;
};

/* Opaque handles. */
struct rulogd_record; /* the record one callback is given */
struct rulogd_out;    /* the batch an output's format appends to */

/* Log levels for host->log (ulogd's loglevel numbers). */
#define RULOGD_LOG_DEBUG 1
#define RULOGD_LOG_INFO 3
#define RULOGD_LOG_NOTICE 5
#define RULOGD_LOG_ERROR 7

/* What the daemon offers a plugin; given to configure and valid for the
 * life of the process. */
struct rulogd_host {
	uint32_t abi_version; /* RULOGD_PLUGIN_ABI_VERSION of the daemon */
	uint32_t size;        /* sizeof(struct rulogd_host) of the daemon */
	/* Input key number `key`: 1 and *out filled if bound and valid, else 0. */
	int (*get)(const struct rulogd_record *rec, uint32_t key, struct rulogd_value *out);
	/* Whether input key number `key` holds a value for this record. */
	int (*is_valid)(const struct rulogd_record *rec, uint32_t key);
	/* Sets output key number `key` (filters only): 0, or -1 if the key or
	 * the value is unusable or not of the key's declared type (STRING and
	 * RAWSTR go for each other; a key declared NONE takes any). Strings and
	 * bytes are copied unless they point into the record's receive buffer
	 * (then they stay a reference). */
	int (*set)(struct rulogd_record *rec, uint32_t key, const struct rulogd_value *v);
	/* The receive buffer the record's strings point into (the packet). */
	int (*packet)(const struct rulogd_record *rec, const uint8_t **ptr, size_t *len);
	/* Appends bytes to the record being formatted (outputs). */
	void (*append)(struct rulogd_out *out, const void *data, size_t len);
	/* A line in the daemon's log, prefixed with the instance. */
	void (*log)(const struct rulogd_record *rec_or_null, int level, const char *msg);
};

/* What process returns. Negative: the record failed (counted, dropped). */
#define RULOGD_CONTINUE 0
#define RULOGD_DROP 1

struct rulogd_plugin {
	uint32_t abi_version; /* RULOGD_PLUGIN_ABI_VERSION: always first */
	uint32_t size;        /* sizeof(struct rulogd_plugin) */
	uint32_t kind;        /* RULOGD_KIND_* */
	uint32_t flags;       /* 0 */
	const char *name;     /* stack= name, e.g. "CSV"; must not be a built-in's */
	const char *summary;  /* one line for --info */
	const struct rulogd_key *input_keys;
	uint32_t n_input_keys;
	uint32_t n_output_keys;
	const struct rulogd_key *output_keys; /* filters only */
	const struct rulogd_option *options;
	uint32_t n_options;
	uint32_t reserved;

	/* Main thread. Returns the instance state (any non-NULL pointer), or
	 * NULL with a message in err (NUL-terminated, at most errlen bytes). */
	void *(*configure)(const struct rulogd_host *host, const struct rulogd_config *cfg,
			   char *err, size_t errlen);
	/* Main thread, after key binding: 0, or -1 with a message in err. May be NULL. */
	int (*start)(void *inst, char *err, size_t errlen);
	/* Input thread (the main thread if start-up failed); the instance is
	 * gone after it. May be NULL. */
	void (*destroy)(void *inst);
	/* Filters, input thread, at least every 100 ms. May be NULL. */
	void (*tick)(void *inst);
	/* Input thread: SIGHUP (1), SIGUSR1 (10), SIGUSR2 (12). May be NULL. */
	void (*signal)(void *inst, int signo);

	/* Filters, input thread: RULOGD_CONTINUE, RULOGD_DROP or negative. */
	int (*process)(void *inst, struct rulogd_record *rec);

	/* Outputs, input thread: render one record with host->append. 0: the
	 * record is in the batch; 1: skipped; negative: failed (counted). */
	int (*format)(void *inst, const struct rulogd_record *rec, struct rulogd_out *out);
	/* Outputs, main thread, once per instance id: the writer's state, or
	 * NULL with a message in err. */
	void *(*writer_open)(const struct rulogd_host *host, const struct rulogd_config *cfg,
			     char *err, size_t errlen);
	/* Outputs, writer thread: write `len` bytes holding `n` whole records;
	 * 0, or a negative errno (the writer retries the batch with backoff). */
	int (*writer_write)(void *writer, const uint8_t *data, size_t len, size_t n);
	/* Outputs, writer thread, on SIGHUP: 0 or a negative errno. May be NULL. */
	int (*writer_reopen)(void *writer);
	/* Outputs, writer thread, at exit after the last write. May be NULL. */
	void (*writer_close)(void *writer);
};

#ifdef __cplusplus
}
#endif

#endif /* RULOGD_PLUGIN_H */
