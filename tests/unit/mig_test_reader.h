/*
 * For tests that check only what a migration stream puts into guest RAM: reads records into
 * the reader's memory up to and including the end record, dropping the state record.
 */
#ifndef VMON_TESTS_UNIT_MIG_TEST_READER_H
#define VMON_TESTS_UNIT_MIG_TEST_READER_H

#include "migration/stream.h"

static inline int mig_test_read_to_end(struct mig_reader *r, char *err, size_t errlen)
{
	struct mig_event ev = { .kind = MIG_EV_PAGES };
	int rc = 0;
	while (!rc && ev.kind != MIG_EV_END) {
		rc = mig_reader_next(r, &ev, err, errlen);
		if (!rc && ev.kind == MIG_EV_STATE)
			snap_file_free(&ev.state);
	}
	return rc;
}

#endif
