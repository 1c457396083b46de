/*
** checksum.h: the checksums of mamlrun's file formats, in one place.
**
**   crc32_ieee  CRC-32 (IEEE 802.3, the value of zlib's crc32, reflected 0xEDB88320): the checkpoint
**           format (lua/checkpoint.lua, through T.crc32)
**   crc32c  CRC-32C (Castagnoli, reflected 0x82F63B78, as iSCSI and ext4): the Omniglot
**           cache (vm/omniglot_cache.c); with the SSE4.2 instruction when the build
**           targets it (-march=x86-64-v2 does), else slicing-by-8 tables (crc32c_soft),
**           which give the same values
**
** Each continues from crc (0 to start): f(f(0, a), b) == f(0, a .. b). (Not named crc32:
** libpng calls zlib's crc32, which a symbol of ours by that name would replace.)
*/
#ifndef MAMLRUN_CHECKSUM_H
#define MAMLRUN_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32_ieee(uint32_t crc, const void *data, size_t n);
uint32_t crc32c(uint32_t crc, const void *data, size_t n);
uint32_t crc32c_soft(uint32_t crc, const void *data, size_t n);

#endif
