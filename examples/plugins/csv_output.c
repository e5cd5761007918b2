/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * CSV: an external rulogd output plugin in C. One line per record:
 *
 *     prefix,saddr,daddr,protocol,sport,dport,totlen
 *
 * the prefix in double quotes (a quote doubled), an empty field for a key
 * the record lacks. Build:
 *
 *     gcc -shared -fPIC -O2 -Wall -I include -o libcsv.so examples/plugins/csv_output.c
 *
 * and in ulogd.conf:
 *
 *     plugin="/path/libcsv.so"
 *     stack=log1:NFLOG,base1:BASE,csv1:CSV
 *     [csv1]
 *     file="/var/log/rulogd.csv"
 *
 * format() runs on the input thread and only renders; the file belongs to
 * the writer (writer_open/writer_write/writer_reopen/writer_close), which
 * the daemon runs on the instance's writer thread.
 */
#include "rulogd_plugin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { K_PREFIX, K_SADDR, K_DADDR, K_PROTO, K_TSPORT, K_TDPORT, K_USPORT, K_UDPORT, K_TOTLEN };

static const struct rulogd_key input_keys[] = {
	[K_PREFIX] = {"oob.prefix", RULOGD_TYPE_STRING, RULOGD_KEYF_OPTIONAL, 0, NULL},
	[K_SADDR] = {"ip.saddr", RULOGD_TYPE_IPADDR, RULOGD_KEYF_OPTIONAL, 0, NULL},
	[K_DADDR] = {"ip.daddr", RULOGD_TYPE_IPADDR, RULOGD_KEYF_OPTIONAL, 0, NULL},
	[K_PROTO] = {"ip.protocol", RULOGD_TYPE_UINT8, RULOGD_KEYF_OPTIONAL, 0, NULL},
	[K_TSPORT] = {"tcp.sport", RULOGD_TYPE_UINT16, RULOGD_KEYF_OPTIONAL, 0, NULL},
	[K_TDPORT] = {"tcp.dport", RULOGD_TYPE_UINT16, RULOGD_KEYF_OPTIONAL, 0, NULL},
	[K_USPORT] = {"udp.sport", RULOGD_TYPE_UINT16, RULOGD_KEYF_OPTIONAL, 0, NULL},
	[K_UDPORT] = {"udp.dport", RULOGD_TYPE_UINT16, RULOGD_KEYF_OPTIONAL, 0, NULL},
	[K_TOTLEN] = {"ip.totlen", RULOGD_TYPE_UINT16, RULOGD_KEYF_OPTIONAL, 0, NULL},
};

static const struct rulogd_option options[] = {
	{"file", RULOGD_OPT_STRING, 0, "/var/log/rulogd.csv", "the file lines are appended to", 0, 0},
};

static const struct rulogd_host *host;

/* The input-thread side needs nothing but the host table. */
struct csv {
	int unused;
};

struct writer {
	char *path;
	int fd;
};

static void *configure(const struct rulogd_host *h, const struct rulogd_config *cfg, char *err,
		       size_t errlen)
{
	struct csv *c;

	(void)cfg;
	host = h;
	c = calloc(1, sizeof(*c));
	if (!c)
		snprintf(err, errlen, "out of memory");
	return c;
}

static void destroy(void *inst)
{
	free(inst);
}

/* Appends `n` bytes of text. */
static void put(struct rulogd_out *out, const char *s, size_t n)
{
	host->append(out, s, n);
}

static void put_u(const struct rulogd_record *rec, struct rulogd_out *out, uint32_t key)
{
	struct rulogd_value v;
	char buf[24];
	int n;

	if (!host->get(rec, key, &v))
		return;
	n = snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v.v.u);
	put(out, buf, (size_t)n);
}

static void put_addr(const struct rulogd_record *rec, struct rulogd_out *out, uint32_t key)
{
	struct rulogd_value v;
	char buf[INET6_ADDRSTRLEN];

	if (!host->get(rec, key, &v) || v.type != RULOGD_TYPE_IPADDR)
		return;
	if (inet_ntop(v.len == 4 ? AF_INET : AF_INET6, v.v.addr, buf, sizeof(buf)))
		put(out, buf, strlen(buf));
}

/* The port of whichever of TCP and UDP the record has. */
static void put_port(const struct rulogd_record *rec, struct rulogd_out *out, uint32_t tcp,
		     uint32_t udp)
{
	put_u(rec, out, host->is_valid(rec, tcp) ? tcp : udp);
}

static int format(void *inst, const struct rulogd_record *rec, struct rulogd_out *out)
{
	struct rulogd_value v;
	(void)inst;

	put(out, "\"", 1);
	if (host->get(rec, K_PREFIX, &v)) {
		/* Zero-copy: v.v.ptr points into the packet's receive buffer. */
		const char *p = (const char *)v.v.ptr, *q;
		size_t left = v.len;
		while ((q = memchr(p, '"', left))) {
			put(out, p, (size_t)(q - p) + 1);
			put(out, "\"", 1);
			left -= (size_t)(q - p) + 1;
			p = q + 1;
		}
		put(out, p, left);
	}
	put(out, "\",", 2);
	put_addr(rec, out, K_SADDR);
	put(out, ",", 1);
	put_addr(rec, out, K_DADDR);
	put(out, ",", 1);
	put_u(rec, out, K_PROTO);
	put(out, ",", 1);
	put_port(rec, out, K_TSPORT, K_USPORT);
	put(out, ",", 1);
	put_port(rec, out, K_TDPORT, K_UDPORT);
	put(out, ",", 1);
	put_u(rec, out, K_TOTLEN);
	put(out, "\n", 1);
	return 0;
}

static int open_file(struct writer *w)
{
	w->fd = open(w->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	return w->fd < 0 ? -errno : 0;
}

static void *writer_open(const struct rulogd_host *h, const struct rulogd_config *cfg, char *err,
			 size_t errlen)
{
	struct writer *w = calloc(1, sizeof(*w));
	int r;

	host = h;
	if (!w || !(w->path = strdup(cfg->options[0].s))) {
		snprintf(err, errlen, "out of memory");
		free(w);
		return NULL;
	}
	r = open_file(w);
	if (r < 0) {
		snprintf(err, errlen, "cannot open %s: %s", w->path, strerror(-r));
		free(w->path);
		free(w);
		return NULL;
	}
	return w;
}

static int writer_write(void *wp, const uint8_t *data, size_t len, size_t n)
{
	struct writer *w = wp;
	(void)n;

	while (len > 0) {
		ssize_t r = write(w->fd, data, len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		data += r;
		len -= (size_t)r;
	}
	return 0;
}

static int writer_reopen(void *wp)
{
	struct writer *w = wp;

	close(w->fd);
	return open_file(w);
}

static void writer_close(void *wp)
{
	struct writer *w = wp;

	if (w->fd >= 0)
		close(w->fd);
	free(w->path);
	free(w);
}

static const struct rulogd_plugin descriptor = {
	.abi_version = RULOGD_PLUGIN_ABI_VERSION,
	.size = sizeof(struct rulogd_plugin),
	.kind = RULOGD_KIND_OUTPUT,
	.name = "CSV",
	.summary = "Appends prefix, addresses, protocol, ports and length as CSV lines",
	.input_keys = input_keys,
	.n_input_keys = sizeof(input_keys) / sizeof(input_keys[0]),
	.options = options,
	.n_options = sizeof(options) / sizeof(options[0]),
	.configure = configure,
	.destroy = destroy,
	.format = format,
	.writer_open = writer_open,
	.writer_write = writer_write,
	.writer_reopen = writer_reopen,
	.writer_close = writer_close,
};

const struct rulogd_plugin *rulogd_plugin_descriptor(void)
{
	return &descriptor;
}
