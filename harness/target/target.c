/* SPDX-License-Identifier: BSD-2-Clause */
/* The target factory: a spec names a kind (and its argument), the kind makes the target. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kinds.h"
#include "target.h"

static const struct target_kind *const kinds[] = {
    &target_kind_qvet,
    &target_kind_exec,
#ifdef QVET_HAVE_LIBNBD
    &target_kind_qemu,
    &target_kind_nbd,
#endif
#ifdef QVET_HAVE_LIBQCOW
    &target_kind_libqcow,
#endif
};

/* The kind a spec names; *arg is what follows its colon (NULL without one). */
static const struct target_kind *find_kind(const char *spec, const char **arg, char *errbuf,
                                           size_t errlen)
{
    const char *colon = strchr(spec, ':');
    size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
    *arg = colon ? colon + 1 : NULL;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strlen(kinds[i]->name) == len && !strncmp(kinds[i]->name, spec, len))
            return kinds[i];
    char known[128] = "";
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s", i ? ", " : "",
                 kinds[i]->name);
    snprintf(errbuf, errlen, "no target kind '%.*s' (known: %s)", (int)len, spec, known);
    return NULL;
}

/* The hooks' wrapper, when there is one, takes the made target over. */
static int wrapped(int ret, const struct target_params *p, struct target **out, char *errbuf,
                   size_t errlen)
{
    const struct target_hooks *h = p->hooks;
    if (ret || !h || !h->wrap)
        return ret;
    struct target *w = h->wrap(*out, h->wrap_ctx);
    if (!w) {
        (*out)->ops->close(*out);
        *out = NULL;
        snprintf(errbuf, errlen, "%s: out of memory", p->path);
        return -ENOMEM;
    }
    *out = w;
    return 0;
}

/* A target from the kind the spec names: a new image (create) or an existing one. */
static int make(const char *spec, bool create, const struct target_params *p,
                struct target **out, char *errbuf, size_t errlen)
{
    const char *arg;
    const struct target_kind *k = find_kind(spec, &arg, errbuf, errlen);
    if (!k)
        return -EINVAL;
    if (create && k->reads_only) {
        snprintf(errbuf, errlen, "target %s only reads images: it can be a --reader, not a "
                 "--target", k->name);
        return -EINVAL;
    }
    int ret = k->start(arg, create, p, out, errbuf, errlen);
    return wrapped(ret, p, out, errbuf, errlen);
}

int target_create(const char *spec, const struct target_params *p, struct target **out,
                  char *errbuf, size_t errlen)
{
    return make(spec, true, p, out, errbuf, errlen);
}

int target_open(const char *spec, const struct target_params *p, struct target **out,
                char *errbuf, size_t errlen)
{
    return make(spec, false, p, out, errbuf, errlen);
}

int target_check_options(const char *spec, const char *options, char *errbuf, size_t errlen)
{
    const char *arg;
    const struct target_kind *k = find_kind(spec, &arg, errbuf, errlen);
    if (!k)
        return -EINVAL;
    return k->check_options ? k->check_options(options, errbuf, errlen) : 0;
}

bool target_can(const struct target *t, unsigned caps)
{
    return (t->caps & caps) == caps;
}
