// The compiled parts of toml++ and Boost.JSON, built into sendmail itself
// instead of loaded from their shared libraries at every start (see
// cli/CMakeLists.txt). Nothing of relayd's own is here.
#define TOML_IMPLEMENTATION
#include <toml++/toml.h>

#include <boost/json/src.hpp>
