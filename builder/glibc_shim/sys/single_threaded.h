/* Stand-in for glibc's <sys/single_threaded.h>, first on the builder's include
   path (g++ and nvcc's host compiler) so that published binaries stay within
   manylinux_2_28 (glibc 2.28).

   glibc >= 2.32 declares `extern char __libc_single_threaded;` here, and
   libstdc++'s <ext/atomicity.h> includes this header whenever it exists and
   then reads that variable to skip atomic reference counting in a process
   that has only one thread. Every extension built on a newer glibc therefore
   imports __libc_single_threaded@GLIBC_2.32 and fails to load on glibc 2.28.

   Zero means "the process may be multi-threaded": libstdc++ then always takes
   the atomic path, which is what it does on glibc < 2.32, where this header
   does not exist. A static const gives each translation unit its own copy that
   the compiler folds away, so nothing is imported. The include guard is
   glibc's, so the real header is never read in the same translation unit. */
#ifndef _SYS_SINGLE_THREADED_H
#define _SYS_SINGLE_THREADED_H

static const char __libc_single_threaded = 0;

#endif /* _SYS_SINGLE_THREADED_H */
