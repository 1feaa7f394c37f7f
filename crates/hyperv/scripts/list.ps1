# polyvisor-hyperv script: list v1
Out-PvJson @(Get-VM | ForEach-Object { ConvertTo-PvVm $_ })
