#!/bin/sh
echo "hello from $GREETING, running as uid $(id -u)"
