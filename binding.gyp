{
  "targets": [
    {
      "target_name": "noatun_mmap",
      "sources": ["native/mmap.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
