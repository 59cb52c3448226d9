/* Logging for long-running processes (sbx-monitor, sbx-shim).  Programs
 * choose where lines go; libcore functions never log on their own for
 * errors they return (the caller decides), only for background events. */
#ifndef OMNIRUN_LOG_H
#define OMNIRUN_LOG_H

enum omr_log_level { OMR_LOG_ERR = 3, OMR_LOG_WARN = 4, OMR_LOG_INFO = 6, OMR_LOG_DEBUG = 7 };

/* Sets the program name, the destination fd (default 2, -1 to silence) and
 * the most verbose level written (default INFO; OMNIRUN_DEBUG=1 for DEBUG). */
void omr_log_init(const char *prog, int fd, enum omr_log_level max);
/* Writes further lines to fd (/dev/kmsg of a guest) the way the kernel
 * log takes them: "<LEVEL>prog[pid]: message", no timestamp (the kernel
 * stamps them); errors reach the console even when the kernel runs
 * "quiet", routine lines only dmesg. */
void omr_log_kmsg(int fd);
void omr_log(enum omr_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
