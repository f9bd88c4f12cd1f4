# Run by `cmake --install` (and cpack), after packaging/CMakeLists.txt set
# the VIGIL_* variables: writes the files whose text names install paths for
# the prefix this install has, and installs them.
#   etc/vigil/vigil.yaml            conf/vigil.yaml, plugin_dir the installed one
#   share/doc/vigil/examples/       conf/examples/*, plugin_dir the installed one
#   lib/<multiarch>/pkgconfig/vigil-plugin.pc
#   lib/systemd/system/vigild.service
# file(INSTALL) honours DESTDIR and records each file in install_manifest.txt.

# An install-time folder: relative ones are under the prefix.
function(vigil_dir var rel)
  if(IS_ABSOLUTE "${rel}")
    set(${var} "${rel}" PARENT_SCOPE)
  else()
    set(${var} "${CMAKE_INSTALL_PREFIX}/${rel}" PARENT_SCOPE)
  endif()
endfunction()

vigil_dir(bindir "${VIGIL_BINDIR}")
vigil_dir(confdir "${VIGIL_SYSCONFDIR}/vigil")
vigil_dir(plugindir "${VIGIL_PLUGINDIR}")
vigil_dir(docdir "${VIGIL_DOCDIR}")

if(NOT CMAKE_INSTALL_PREFIX STREQUAL VIGIL_CONFIGURED_PREFIX)
  message(WARNING "vigil: installing into ${CMAKE_INSTALL_PREFIX}, but this build was "
    "configured for ${VIGIL_CONFIGURED_PREFIX}: the installed vigild's defaults (-c, "
    "plugin_dir) point there. Run it as vigild -c ${confdir}/vigil.yaml (that config names "
    "${plugindir}), or configure with -DCMAKE_INSTALL_PREFIX=${CMAKE_INSTALL_PREFIX}.")
endif()

# conf text with its `plugin_dir:` line pointing at the installed plugins.
function(vigil_with_plugindir var file)
  file(READ "${file}" text)
  string(REGEX REPLACE "(^|\n)plugin_dir:[^\n]*" "\\1plugin_dir: ${plugindir}   # where the install put the plugins" out "${text}")
  if(out STREQUAL text)
    message(FATAL_ERROR "vigil: ${file} has no top-level plugin_dir: line to point at "
      "${plugindir}")
  endif()
  set(${var} "${out}" PARENT_SCOPE)
endfunction()

set(staging "${VIGIL_STAGING_DIR}")
file(REMOVE_RECURSE "${staging}")

# The default config, with the one check-it line naming where it now is.
vigil_with_plugindir(text "${VIGIL_SOURCE_DIR}/conf/vigil.yaml")
string(REPLACE "vigild --check -c conf/vigil.yaml" "vigild --check -c ${confdir}/vigil.yaml"
  text "${text}")
file(WRITE "${staging}/vigil.yaml" "${text}")
file(INSTALL "${staging}/vigil.yaml" DESTINATION "${confdir}")

file(GLOB examples "${VIGIL_SOURCE_DIR}/conf/examples/*.yaml")
foreach(f IN LISTS examples)
  get_filename_component(name "${f}" NAME)
  vigil_with_plugindir(text "${f}")
  file(WRITE "${staging}/examples/${name}" "${text}")
endforeach()
file(INSTALL "${staging}/examples" DESTINATION "${docdir}")

# pkg-config's custom: folders under the prefix say so, as ${prefix}/...
set(prefix "${CMAKE_INSTALL_PREFIX}")
foreach(d INCLUDEDIR PLUGINDIR)
  if(IS_ABSOLUTE "${VIGIL_${d}}")
    set(pc_${d} "${VIGIL_${d}}")
  else()
    set(pc_${d} "\${prefix}/${VIGIL_${d}}")
  endif()
endforeach()
configure_file("${CMAKE_CURRENT_LIST_DIR}/vigil-plugin.pc.in" "${staging}/vigil-plugin.pc" @ONLY)
vigil_dir(pkgconfigdir "${VIGIL_PKGCONFIGDIR}")
file(INSTALL "${staging}/vigil-plugin.pc" DESTINATION "${pkgconfigdir}")

# The unit is written for prefix /usr; other prefixes get their own paths
# to vigil's programs and config (not to the system's: /usr/bin/kill stays).
file(READ "${VIGIL_SOURCE_DIR}/conf/systemd/vigild.service" text)
string(REPLACE "/usr/bin/vigil" "${bindir}/vigil" text "${text}")
string(REPLACE "/etc/vigil/" "${confdir}/" text "${text}")
file(WRITE "${staging}/vigild.service" "${text}")
vigil_dir(unitdir "${VIGIL_UNITDIR}")
file(INSTALL "${staging}/vigild.service" DESTINATION "${unitdir}")
