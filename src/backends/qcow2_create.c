/*
 * qcow2: a new, empty overlay image on top of an existing one. The layout is fixed and minimal
 * (version 3, 64 KiB clusters, 16-bit refcounts): cluster 0 the header, its extensions and the
 * backing file's name; 1 the refcount table; 2 its only refcount block; then the L1 table, all
 * entries zero, so every read falls through to the backing file.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/qcow2_internal.h"

#define NEW_CLUSTER_BITS 16
#define NEW_CLUSTER (1ULL << NEW_CLUSTER_BITS)
#define NEW_HEADER_LEN 104
#define EXT_BACKING_FORMAT 0xe2792acau
#define MAX_BACKING_NAME 1023
/* L1 tables larger than this are refused by QEMU (32 MiB): a virtual size of 2 PiB. */
#define MAX_L1_CLUSTERS 512

enum { CL_HEADER, CL_REFTABLE, CL_REFBLOCK, CL_L1 };

static void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static int create_error(const char *path, int rc, const char *what)
{
	log_error(QCOW2_COMP, "cannot create the overlay %s: %s: %s", path, what, strerror(-rc));
	return rc;
}

/* The backing file's format (when not given) and the virtual size it gives the overlay. */
static int backing_info(const char *backing, const char **format, uint64_t *size)
{
	int fd = open(backing, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	uint8_t h[32];
	int rc = 0;
	if (fstat(fd, &st) < 0)
		rc = -errno;
	else if (!S_ISREG(st.st_mode))
		rc = -EINVAL;
	bool is_qcow2 = !rc && pread(fd, h, sizeof(h), 0) == sizeof(h) && qcow2_probe(h, sizeof(h));
	close(fd);
	if (rc)
		return rc;
	if (!*format)
		*format = is_qcow2 ? "qcow2" : "raw";
	if (!strcmp(*format, "qcow2") && !is_qcow2)
		return -EINVAL;
	*size = !strcmp(*format, "qcow2") ? qcow2_be64(h + 24) : (uint64_t)st.st_size;
	return *size ? 0 : -EINVAL;
}

/*
 * The name the overlay records: relative when the backing file lies in the overlay's directory
 * (the pair can then be moved together), else absolute.
 */
static int backing_name(const char *path, const char *backing, char *out, size_t outlen)
{
	char real_backing[PATH_MAX], dir_copy[PATH_MAX], real_dir[PATH_MAX], backing_dir[PATH_MAX];
	if (!realpath(backing, real_backing))
		return -errno;
	snprintf(dir_copy, sizeof(dir_copy), "%s", path);
	if (!realpath(dirname(dir_copy), real_dir))
		return -errno;
	snprintf(backing_dir, sizeof(backing_dir), "%s", real_backing);
	const char *name = real_backing;
	if (!strcmp(dirname(backing_dir), real_dir))
		name = real_backing + strlen(real_dir) + (strcmp(real_dir, "/") ? 1 : 0);
	if (strlen(name) > MAX_BACKING_NAME || strlen(name) >= outlen)
		return -ENAMETOOLONG;
	snprintf(out, outlen, "%s", name);
	return 0;
}

/* The image's metadata clusters, ready to be written at offset 0. */
static uint8_t *build_image(const char *name, const char *format, uint64_t size, size_t *len)
{
	uint64_t l1_size = (size + (NEW_CLUSTER << (NEW_CLUSTER_BITS - 3)) - 1) >> (NEW_CLUSTER_BITS * 2 - 3);
	uint64_t l1_clusters = (l1_size * 8 + NEW_CLUSTER - 1) / NEW_CLUSTER;
	if (l1_clusters == 0)
		l1_clusters = 1;
	if (l1_clusters > MAX_L1_CLUSTERS)
		return NULL;
	uint64_t clusters = CL_L1 + l1_clusters;
	uint8_t *b = calloc(clusters, NEW_CLUSTER);
	if (!b)
		return NULL;
	put_be32(b, QCOW2_MAGIC);
	put_be32(b + 4, 3);
	put_be32(b + 20, NEW_CLUSTER_BITS);
	qcow2_put_be64(b + 24, size);
	put_be32(b + 36, (uint32_t)l1_size);
	qcow2_put_be64(b + 40, CL_L1 * NEW_CLUSTER);
	qcow2_put_be64(b + 48, CL_REFTABLE * NEW_CLUSTER);
	put_be32(b + 56, 1);  /* refcount table clusters */
	put_be32(b + 96, 4);  /* refcount order: 16-bit refcounts */
	put_be32(b + 100, NEW_HEADER_LEN);
	/* Extensions: the backing format, then the end marker; the backing file's name follows. */
	size_t flen = strlen(format), pos = NEW_HEADER_LEN;
	put_be32(b + pos, EXT_BACKING_FORMAT);
	put_be32(b + pos + 4, (uint32_t)flen);
	memcpy(b + pos + 8, format, flen);
	pos += 8 + ((flen + 7) & ~(size_t)7);
	pos += 8; /* end of extensions: type 0, length 0 */
	size_t nlen = strlen(name);
	qcow2_put_be64(b + 8, pos);
	put_be32(b + 16, (uint32_t)nlen);
	memcpy(b + pos, name, nlen);

	qcow2_put_be64(b + CL_REFTABLE * NEW_CLUSTER, CL_REFBLOCK * NEW_CLUSTER);
	uint8_t *refblock = b + CL_REFBLOCK * NEW_CLUSTER;
	for (uint64_t i = 0; i < clusters; i++)
		refblock[i * 2 + 1] = 1;
	*len = clusters * NEW_CLUSTER;
	return b;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = pwrite(fd, p + done, len - done, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	return 0;
}

static int sync_dir_of(const char *path)
{
	char copy[PATH_MAX];
	snprintf(copy, sizeof(copy), "%s", path);
	int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	int rc = fsync(dfd) < 0 ? -errno : 0;
	close(dfd);
	return rc;
}

int qcow2_create_overlay(const char *path, const char *backing, const char *backing_format)
{
	if (backing_format && strcmp(backing_format, "raw") && strcmp(backing_format, "qcow2"))
		return create_error(path, -EINVAL, "the backing format must be raw or qcow2");
	const char *format = backing_format;
	uint64_t size = 0;
	int rc = backing_info(backing, &format, &size);
	if (rc) {
		log_error(QCOW2_COMP, "cannot create the overlay %s: its backing file %s is not a readable %s image "
				      "with a size: %s", path, backing, backing_format ? backing_format : "regular",
			  strerror(-rc));
		return rc;
	}
	return qcow2_create_overlay_sized(path, backing, format, size);
}

int qcow2_create_overlay_sized(const char *path, const char *backing, const char *backing_format, uint64_t size)
{
	if (strcmp(backing_format, "raw") && strcmp(backing_format, "qcow2"))
		return create_error(path, -EINVAL, "the backing format must be raw or qcow2");
	if (strlen(path) >= PATH_MAX)
		return create_error(path, -ENAMETOOLONG, "the path is too long");
	if (!size)
		return create_error(path, -EINVAL, "its backing file has no size");
	const char *format = backing_format;
	char name[PATH_MAX];
	int rc;
	if ((rc = backing_name(path, backing, name, sizeof(name))))
		return create_error(path, rc, "resolving the backing file's name");
	size_t len = 0;
	uint8_t *image = build_image(name, format, size, &len);
	if (!image)
		return create_error(path, size > (1ULL << 50) ? -EFBIG : -ENOMEM, "building its metadata");
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		free(image);
		return create_error(path, rc, rc == -EEXIST ? "the file exists already (vmon never replaces one)"
							   : "opening it");
	}
	rc = write_all(fd, image, len);
	free(image);
	if (!rc && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (!rc)
		rc = sync_dir_of(path);
	if (rc) {
		unlink(path);
		return create_error(path, rc, "writing it");
	}
	return 0;
}
