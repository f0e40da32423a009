# The embeddable library (vmm/libvmm.h): libvmm.so and libvmm.a, built into build/libvmm/.
# It is the VMM core plus the JSON configuration mapping (api/config_json.c, through
# vmm_api_json), without the HTTP server: libvmm -> vmm_api_json -> vmm_core, so vmm_core itself stays free of api/.
include(GNUInstallDirs)
find_package(PkgConfig REQUIRED)
pkg_check_modules(LIBVMM_CJSON REQUIRED IMPORTED_TARGET libcjson)
pkg_check_modules(LIBVMM_URING REQUIRED IMPORTED_TARGET liburing)

set(LIBVMM_PARTS vmm_api_json vmm_core vmm_arch vmm_devices vmm_memory vmm_common)

# Shared: the internal libraries linked in (their objects are position independent), only
# the libvmm_* functions exported.
add_library(libvmm_shared SHARED libvmm.c)
target_link_libraries(libvmm_shared PRIVATE vmm_api_json)
target_link_options(libvmm_shared PRIVATE -Wl,--exclude-libs,ALL
                    -Wl,--version-script=${CMAKE_CURRENT_SOURCE_DIR}/libvmm.map)
# Every symbol resolved at link time, except in clang's sanitizer builds: clang links its
# sanitizer runtimes statically into executables only, so a shared library leaves their
# symbols (__asan_*, __tsan_*) to the program that loads it.
if(NOT (VMM_SANITIZE AND CMAKE_C_COMPILER_ID MATCHES "Clang"))
  target_link_options(libvmm_shared PRIVATE -Wl,--no-undefined)
endif()
set_target_properties(libvmm_shared PROPERTIES
  OUTPUT_NAME vmm VERSION ${PROJECT_VERSION} SOVERSION 0
  LINK_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/libvmm.map
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/libvmm)
target_include_directories(libvmm_shared INTERFACE ${CMAKE_CURRENT_SOURCE_DIR})

# Static: one archive holding every object of the parts.
set(LIBVMM_OBJECTS)
foreach(part ${LIBVMM_PARTS})
  list(APPEND LIBVMM_OBJECTS $<TARGET_OBJECTS:${part}>)
endforeach()
add_library(libvmm_static STATIC libvmm.c ${LIBVMM_OBJECTS})
add_dependencies(libvmm_static ${LIBVMM_PARTS})
target_link_libraries(libvmm_static PRIVATE vmm_api_json)
target_link_libraries(libvmm_static INTERFACE PkgConfig::LIBVMM_CJSON PkgConfig::LIBVMM_URING
                      ${FDT_LIBRARY} Threads::Threads m)
set_target_properties(libvmm_static PROPERTIES OUTPUT_NAME vmm
  ARCHIVE_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/libvmm)
target_include_directories(libvmm_static INTERFACE ${CMAKE_CURRENT_SOURCE_DIR})

file(RELATIVE_PATH LIBVMM_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
string(REGEX REPLACE "/$" "" LIBVMM_PC_TO_PREFIX "${LIBVMM_PC_TO_PREFIX}")
configure_file(libvmm.pc.in ${CMAKE_BINARY_DIR}/libvmm/libvmm.pc @ONLY)
install(TARGETS libvmm_shared libvmm_static
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES libvmm.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${CMAKE_BINARY_DIR}/libvmm/libvmm.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
