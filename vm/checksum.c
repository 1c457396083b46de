/*
** checksum.c: CRC-32 and CRC-32C (see checksum.h for where each is used).
*/
#include <pthread.h>
#include <string.h>
#if defined(__SSE4_2__) && defined(__x86_64__)
#include <nmmintrin.h>
#endif

#include "checksum.h"

/* ------------------------------------------------------------ CRC-32 (checkpoints) */

static uint32_t crc32_table[256];
static pthread_once_t crc32_once = PTHREAD_ONCE_INIT;

static void crc32_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    crc32_table[i] = c;
  }
}

uint32_t crc32_ieee(uint32_t crc, const void *data, size_t n) {
  pthread_once(&crc32_once, crc32_init);
  const unsigned char *p = data;
  crc = ~crc;
  for (size_t i = 0; i < n; i++) crc = crc32_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

/* ------------------------------------------------------------ CRC-32C (the Omniglot cache) */

static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void crc32c_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;
    crc32c_table[0][i] = c;
  }
  for (int i = 0; i < 256; i++)
    for (int s = 1; s < 8; s++)
      crc32c_table[s][i] = (crc32c_table[s - 1][i] >> 8) ^ crc32c_table[0][crc32c_table[s - 1][i] & 0xff];
}

static int little_endian(void) {
  const uint16_t one = 1;
  uint8_t first;
  memcpy(&first, &one, 1);
  return first == 1;
}

uint32_t crc32c_soft(uint32_t crc, const void *data, size_t n) {
  pthread_once(&crc32c_once, crc32c_init);
  const uint8_t *p = data;
  crc = ~crc;
  if (little_endian()) {
    for (; n >= 8; n -= 8, p += 8) {
      uint32_t lo, hi;
      memcpy(&lo, p, 4);
      memcpy(&hi, p + 4, 4);
      lo ^= crc;
      crc = crc32c_table[7][lo & 0xff] ^ crc32c_table[6][(lo >> 8) & 0xff] ^ crc32c_table[5][(lo >> 16) & 0xff] ^
            crc32c_table[4][lo >> 24] ^ crc32c_table[3][hi & 0xff] ^ crc32c_table[2][(hi >> 8) & 0xff] ^
            crc32c_table[1][(hi >> 16) & 0xff] ^ crc32c_table[0][hi >> 24];
    }
  }
  for (; n > 0; n--, p++) crc = crc32c_table[0][(crc ^ *p) & 0xff] ^ (crc >> 8);
  return ~crc;
}

uint32_t crc32c(uint32_t crc, const void *data, size_t n) {
#if defined(__SSE4_2__) && defined(__x86_64__)
  const uint8_t *p = data;
  uint64_t c = (uint32_t)~crc;
  for (; n > 0 && ((uintptr_t)p & 7) != 0; n--, p++) c = _mm_crc32_u8((uint32_t)c, *p);
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
  }
  for (; n > 0; n--, p++) c = _mm_crc32_u8((uint32_t)c, *p);
  return ~(uint32_t)c;
#else
  return crc32c_soft(crc, data, n);
#endif
}
