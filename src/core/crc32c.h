/*
 * crc32c - CRC-32C (Castagnoli), the checksum of every spool record.
 */
#ifndef TERN_CORE_CRC32C_H
#define TERN_CORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: start with crc = 0. */
uint32_t crc32c(uint32_t crc, const void *data, size_t len);
/* The same without the processor's crc32 instruction (for tests). */
uint32_t crc32c_portable(uint32_t crc, const void *data, size_t len);

#endif
