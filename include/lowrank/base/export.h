/* export.h — LR_API marks the functions and data the shared library exports.
 *
 * The library is built with -fvisibility=hidden, so only what a public header declares with
 * LR_API is visible to programs linking liblowrank.so; the lr__ helpers inside lib/ are not.
 * Building or using the static library needs nothing special. */
#ifndef LOWRANK_EXPORT_H
#define LOWRANK_EXPORT_H

#if defined(_WIN32) && defined(LOWRANK_BUILD_SHARED)
#define LR_API __declspec(dllexport)
#elif defined(_WIN32) && defined(LOWRANK_USE_SHARED)
#define LR_API __declspec(dllimport)
#elif defined(__GNUC__)
#define LR_API __attribute__((visibility("default")))
#else
#define LR_API
#endif

#endif
