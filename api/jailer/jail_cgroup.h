/*
 * The VM's cgroup v2 (Firecracker's jailer rules): with --cgroup settings, the jailer
 * creates <mount>/<parent>/<id>, enables each setting's controller in cgroup.subtree_control
 * from the mount down to <parent>, writes the values, then moves itself into the cgroup
 * (the VMM it becomes stays there). Without settings, it moves itself into <mount>/<parent>
 * when that cgroup exists, and does nothing when it does not.
 *
 * <mount> is the first cgroup2 line of the mount table. Every path below it is made of
 * validated components (jail_args.h) and opened without following links. A setting's file
 * must already exist (the kernel creates a controller's files): nothing is created in
 * cgroupfs but directories.
 */
#ifndef API_JAILER_JAIL_CGROUP_H
#define API_JAILER_JAIL_CGROUP_H

#include <stddef.h>
#include <sys/types.h>

#include "common/error.h"
#include "jail_args.h"

/* The cgroup v2 mount point from a mount table (/proc/mounts, or a test's file). */
int jail_cgroup_find_v2(const char *mounts_path, char *out, size_t size, struct error *err);

/* Each setting's controller must be listed in <mount>/cgroup.controllers. */
int jail_cgroup_check(const char *mount, const struct jail_cgroup_setting *s, size_t n,
                      struct error *err);

/* Creates <mount>/<parent>/<id>, enables the controllers, writes the settings, then writes
 * pid to its cgroup.procs. */
int jail_cgroup_setup(const char *mount, const char *parent, const char *id,
                      const struct jail_cgroup_setting *s, size_t n, pid_t pid, struct error *err);

/* Without settings: pid into <mount>/<parent>/cgroup.procs if that cgroup exists. Returns 1
 * when moved, 0 when the cgroup does not exist. */
int jail_cgroup_join_parent(const char *mount, const char *parent, pid_t pid, struct error *err);

#endif
